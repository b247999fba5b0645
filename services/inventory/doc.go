// Package inventory keeps the device inventory of amtprov: it consumes every
// event on amt.v1.> (durable consumer "inventory"), applies each through the
// handler table (handlers.go) to the devices, oob_capability,
// device_location, device_identification and device_provisioning tables,
// and serves the read API GET /v1/devices and GET /v1/devices/{uuid}
// (INTERFACES.md "HTTP API").
//
// Design decisions:
//
//   - Batching. The bus adapter's workers each hand one event's update to a
//     batcher and wait; the batcher writes up to BatchSize updates (or what
//     arrived within BatchWait) in one transaction, and only then do the
//     workers return, so every message is acknowledged after its row is
//     committed and never before. Workers therefore bound the batch size:
//     Workers should be at least BatchSize.
//   - Order tolerance and idempotence. Every field group of every row carries
//     the (event time, event id) of the event that set it; a write replaces
//     a group only with a strictly newer one (record.Mark). Redelivered,
//     duplicated, reordered or replayed events converge on the same tables,
//     and nothing stores the wall-clock time of a write.
//   - Poison isolation. A batch the database refuses for its data is split
//     in halves until the offending event fails alone; that event is
//     terminated, the others are written. A batch that fails because the
//     database is away is retried briefly in-process, then handed back to
//     JetStream for redelivery with backoff.
//   - Order of locks. Updates in a batch are merged per device and written
//     in UUID order, so concurrent replicas cannot deadlock each other.
package inventory
