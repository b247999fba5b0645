// Package discovery finds Intel AMT devices on the network, fast and
// politely, and identifies the ones amtprov (or, given their credentials,
// another console) manages. The operator's view is docs/discovery.md.
//
// Shape. A scan (amtprov scan run, a target's schedule, or a device's
// amt.v1.provisioning.succeeded event) is cut into shards of
// Config.ShardBits (a /24 by default) put on the JetStream work queue
// AMT_WORK (subject amt.work.discovery.shard, WorkQueue retention; not part
// of the public amt.v1 contract). Every replica runs Config.ShardWorkers
// workers that lease one shard each, keep the lease with InProgress
// heartbeats every AckWait/3 and sweep it with package sweep; a replica
// that dies stops heartbeating and JetStream redelivers its shards after
// AckWait to the others. Recording a shard is one transaction
// (discovery_shards.done_at set only once, discovery_results, counters of
// discovery_scans, device.discovered events through libs/outbox), so a
// redelivered shard is probed again but counted once, and its events keep
// their ids (JetStream de-duplicates them). The replica that records the
// last shard completes the scan in the same transaction and queues
// scan.completed, which lists the devices amtprov provisioned that were
// last located in the scanned blocks and did not answer (inventory marks
// them stale) and those identified with another console's credentials.
//
// Rate limits. A target's rate_limit (packets per second) is shared by the
// shards of that target one replica sweeps at once; Config.GlobalRate caps
// the replica. With R replicas on one scan the network sees at most R times
// the target's rate: set it with the replica count in mind. Each address is
// probed at most once per method per delivery of its shard, one probe at
// least sweep.Config.PerDeviceInterval after the previous one.
//
// Credentials. amtprov's own (device_credentials source amtprov, found by
// the device's last known address in inventory's device_location) are sent
// only over TLS to the certificate pinned at provisioning. Another
// console's (a credentials file's rows, CIDR or UUID, sealed with
// libs/secrets in discovery_credentials for the scan) go over TLS when the
// port is open, without verifying a certificate amtprov did not issue (its
// SHA-256 is recorded: trust on first use), else over digest on 16992. A
// device they open is stored under its UUID in device_credentials (source
// other_console, match = the file's row), where `amtprov device
// credentials` reads it. At most three credentials are tried per device
// and scan. A UUID row applies only to a device whose address inventory
// knows; CIDR rows need no prior knowledge.
package discovery
