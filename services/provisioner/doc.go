// Package provisioner turns hellos into committed, verified devices: a
// durable pull consumer ("provisioner") on amt.v1.device.hello.> shared by
// every replica, a worker pool per replica, a job with a lease per device in
// PostgreSQL, and the TLS-PKI remote-configuration workflow
// (internal/workflow) against the device. It also answers the admin verbs
// profile.create/list/assign, jobs.list/show, explain.device and
// device.credentials on amt.v1.admin.>.
//
// Both cmd/provisioner and `amtprov dev` build it with New and run it with
// Run; docs/provisioner.md has configuration, the error codes and benchmarks.
//
// Exactly-once, across replicas. JetStream delivers each hello at least
// once; the job store turns that into at most one worker per device
// (jobstore.Acquire under a row lock and a partial unique index) and one
// commit per attempt (CommitChanges is one-shot: a repeat reads the
// device's state first). Events are written to the outbox in the same
// transaction as the job change they report, and the outbox relay
// publishes them with their ce-id as Nats-Msg-Id.
//
// Redelivery. A transient failure (device unreachable, busy, rebooted, CA
// down) hands the job back (queued) and asks for redelivery after
// Config.Backoff; after Config.MaxDeliver runs of the job (not deliveries
// of one hello) the job fails with the last code. A permanent failure ends the job at once with its code and
// hint (errcode). A redelivered hello whose job is leased by another worker
// is retried after half a lease, so a crashed replica's job is taken over
// once its lease expires (the hello that last resumed a job drives it); a
// different hello for a running job is acknowledged as a duplicate; a hello not newer than the device's last
// finished job is stale and acknowledged.
package provisioner
