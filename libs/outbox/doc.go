// Package outbox is the transactional outbox: a service that changes rows and
// reports the change as an event writes both in one PostgreSQL transaction
// (Add), and a Relay publishes the stored events to JetStream afterwards. A
// crash can then neither lose an event whose change committed nor announce a
// change that rolled back (ARCHITECTURE.md "Data model").
//
// Delivery is at least once: a relay that dies between JetStream's PubAck and
// deleting the row publishes the row again after restart, and JetStream drops
// the copy because Nats-Msg-Id = ce-id (within the stream's duplicate
// window). Any number of relays may run against one database: each claims a
// batch with FOR UPDATE SKIP LOCKED, so no row is published by two relays at
// once. Events of one subject leave one relay in the order they were added;
// across relays order is not guaranteed, and consumers must tolerate that
// (inventory does).
//
// All services share the one outbox table. A relay with RelayConfig.Topics
// claims only the rows of those subject prefixes, so each service publishes
// exactly the events it wrote and its NATS user needs no permission on
// anyone else's (deploy/nats/accounts.conf); a relay without Topics
// publishes every row (`amtprov dev`, where one process runs every service).
//
// The table is created by migration 00002 in libs/store. Add wakes relays
// with NOTIFY on the channel NotifyChannel at commit; relays also poll, so a
// missed notification only delays an event by the poll interval.
package outbox
