// Package probe holds discovery's parsers of untrusted network answers: the
// ASF RMCP presence pong (PROTOCOL.md §9.2) and the HTTP Server banner of
// AMT's web server (§9.1). Both are written from the protocol notes, not
// shared with the simulator (tools/amtsim keeps its own codec), so that one
// bug cannot make scanner and simulator agree on something firmware does
// not do. Every function here takes hostile input: it never panics, bounds
// what it reads and fails with a typed error.
package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// RMCP/ASF wire constants (PROTOCOL.md §9.2; DSP0136 §3.2.2-3.2.4).
const (
	rmcpVersion  = 0x06   // RMCP version 1.0
	classASF     = 0x06   // message class ASF
	ackBit       = 0x80   // class bit 7: an RMCP ACK, not a message
	ianaASF      = 4542   // 0x11BE in every ASF header
	ianaIntel    = 343    // 0x0157, enterprise number in an Intel pong's data
	typePing     = 0x80   // Presence Ping
	typePong     = 0x40   // Presence Pong
	headerLen    = 12     // RMCP (4) + ASF (8)
	pongDataLen  = 0x10   // data length of a presence pong
	pongLen      = 28     // header + pong data
	interactRSP  = 0x20   // supported-interactions bit MeshCentral requires of AMT
	noAckSeq     = 0xFF   // RMCP sequence number asking for no ACK
	stateMask    = 0x03   // OEM byte 19 bits 0-1: provisioning state
	bothPortsBit = 0x04   // OEM byte 19 bit 2: 16992 and 16993 both open
	maxDatagram  = 0x0400 // anything longer is not a pong; read buffers use this
)

// MaxDatagram is the read buffer a pong reader needs: anything longer is
// refused unread (ErrPongLength).
const MaxDatagram = maxDatagram

// AppendPing appends a 12-byte Presence Ping with message tag tag:
// 06 00 FF 06 | 00 00 11 BE | 80 TT 00 00 (no RMCP ACK wanted).
func AppendPing(b []byte, tag byte) []byte {
	return append(b, rmcpVersion, 0, noAckSeq, classASF, 0, 0, 0x11, 0xBE, typePing, tag, 0, 0)
}

// Reasons a datagram is not an AMT presence pong. A *PongError wraps one.
var (
	ErrPongLength     = errors.New("datagram is not 28 bytes")
	ErrPongHeader     = errors.New("not an RMCP v1.0 ASF message")
	ErrPongType       = errors.New("ASF message is not a Presence Pong")
	ErrPongDataLength = errors.New("pong data length is not 16")
	ErrPongEnterprise = errors.New("pong is not from Intel (IANA 343)")
	ErrPongNotAMT     = errors.New("pong does not announce AMT (interactions bit 0x20 clear)")
	ErrPongState      = errors.New("provisioning state 3 is undefined")
)

// PongError says why and where a datagram was refused.
type PongError struct {
	Err    error
	Offset int
	Got    string
}

func (e *PongError) Error() string {
	return fmt.Sprintf("parse rmcp pong: %v (offset %d: %s)", e.Err, e.Offset, e.Got)
}

func (e *PongError) Unwrap() error { return e.Err }

// Pong is what an AMT device says about itself in a presence pong
// (PROTOCOL.md §9.2, Intel OEM bytes as MeshCentral reads them).
type Pong struct {
	Tag byte // message tag, echoed from the ping
	// Port is the management port AMT advertises (16992, or 16993 with TLS).
	Port uint16
	// BothPorts: 16992 and 16993 both accept connections.
	BothPorts bool
	// Major and Minor are one nibble each on the wire: firmware 16 and later
	// does not fit, so Major 15 means "15 or later" and the banner or WS-Man
	// gives the real version.
	Major, Minor int
	// State is the provisioning state: 0 pre, 1 in, 2 post (§2.2).
	State int
}

// ParsePong decodes one datagram as an Intel AMT presence pong. It checks
// every byte that identifies a pong (RMCP version, ASF class and IANA, type
// 0x40, data length 16, Intel's enterprise number, the 0x20 interactions
// bit) and refuses a datagram of any other length before reading it.
func ParsePong(b []byte) (Pong, error) {
	if len(b) != pongLen {
		return Pong{}, &PongError{Err: ErrPongLength, Offset: 0, Got: fmt.Sprintf("%d bytes", len(b))}
	}
	if b[0] != rmcpVersion || b[3]&ackBit != 0 || b[3]&0x1F != classASF || binary.BigEndian.Uint32(b[4:8]) != ianaASF {
		return Pong{}, &PongError{Err: ErrPongHeader, Offset: 0, Got: fmt.Sprintf("% x", b[:8])}
	}
	if b[8] != typePong {
		return Pong{}, &PongError{Err: ErrPongType, Offset: 8, Got: fmt.Sprintf("0x%02x", b[8])}
	}
	if b[11] != pongDataLen {
		return Pong{}, &PongError{Err: ErrPongDataLength, Offset: 11, Got: fmt.Sprintf("%d", b[11])}
	}
	if iana := binary.BigEndian.Uint32(b[12:16]); iana != ianaIntel {
		return Pong{}, &PongError{Err: ErrPongEnterprise, Offset: 12, Got: fmt.Sprintf("%d", iana)}
	}
	if b[21]&interactRSP == 0 {
		return Pong{}, &PongError{Err: ErrPongNotAMT, Offset: 21, Got: fmt.Sprintf("0x%02x", b[21])}
	}
	st := int(b[19] & stateMask)
	if st == 3 {
		return Pong{}, &PongError{Err: ErrPongState, Offset: 19, Got: fmt.Sprintf("0x%02x", b[19])}
	}
	return Pong{
		Tag:       b[9],
		Port:      binary.BigEndian.Uint16(b[16:18]),
		BothPorts: b[19]&bothPortsBit != 0,
		Major:     int(b[18] >> 4),
		Minor:     int(b[18] & 0x0F),
		State:     st,
	}, nil
}
