// Package bus is amtprov's only door to NATS JetStream: connecting,
// creating the AMT stream and durable pull consumers, publishing events with
// de-duplication ids and W3C trace context, and the one consume adapter that
// turns a go-kit endpoint's result into Ack, NakWithDelay or Term
// (STYLE.md "Handlers and transports").
//
// Services never touch a jetstream.Msg: they publish events.Payload values
// through a Publisher and receive events.Envelope values in an endpoint
// run by Consume.
//
// Decisions recorded here:
//   - Success is acknowledged with AckSync (JetStream double ack): the
//     handler has already committed its effects, and waiting for the server
//     to confirm the ack means a message acked before Stop returns is never
//     redelivered to the next consumer. A failed AckSync is logged and the
//     message is redelivered after AckWait, which idempotent handlers absorb.
//     ConsumeOptions.AckAsync switches to a plain Ack for throughput.
//   - Failures are never plain-Nak'ed (that redelivers instantly and ignores
//     backoff): RetryAfterError gives its own delay, other errors get the
//     ConsumeOptions.Backoff entry for the delivery count.
//   - Messages are pulled with Fetch requests of at most the free room in a
//     buffer of Workers messages, each request waiting at most 500 ms. A
//     request is always allowed to finish rather than abandoned by
//     unsubscribing: the server may already have assigned messages to it,
//     which would then sit unacknowledged until AckWait.
//   - Stop drains: it stops pulling, lets the last request, the buffer and
//     in-flight messages finish, and only if its ctx ends first cancels the
//     handlers and hands their messages back with NakWithDelay(0) so another
//     replica takes them at once.
package bus
