// Package store is amtprov's PostgreSQL foundation: the pgx connection pool
// every service opens at start, and the SQL schema, embedded from
// migrations/ and applied with goose under a PostgreSQL advisory lock so that
// any number of replicas can start at the same moment.
//
// Services keep their own repositories (queries) next to their logic; this
// package holds only what all of them share. Tests get a fresh, migrated
// database from the storetest subpackage; `amtprov dev` and storetest start a
// private cluster from the local PostgreSQL binaries with pglocal.
package store
