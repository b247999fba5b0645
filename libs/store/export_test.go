package store

// MigrationLockID exposes the advisory lock key to the black-box tests.
var MigrationLockID = migrationLockID
