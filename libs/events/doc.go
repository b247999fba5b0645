// Package events is amtprov's public event contract (INTERFACES.md
// "Events", ARCHITECTURE.md "The event contract"): the NATS subjects, the
// CloudEvents 1.0 binary-mode headers, and one Go type per event type.
// Nothing else in the repository spells a subject or a ce-type.
//
// A subscriber in another language reads the JSON Schemas in schema/ and the
// AsyncAPI document in docs/asyncapi.yaml; tests keep all three in step.
package events
