// Package rmcp is the simulator's side of the ASF RMCP presence ping/pong on
// UDP 623 (PROTOCOL.md §9.2, DSP0136 §3.2.2-3.2.4): it parses the pings a
// discovery scanner sends and builds the pong Intel AMT answers with, Intel
// OEM bytes included.
//
// It is internal on purpose: amtprov's discovery scanner keeps its own,
// independent parser, so that a shared bug cannot make both sides agree on
// something firmware does not do.
package rmcp

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Wire constants of PROTOCOL.md §9.2.
const (
	Version    = 0x06 // RMCP version 1.0
	ClassASF   = 0x06 // message class ASF; bit 7 set means an RMCP ACK
	IANAASF    = 4542 // 0x11BE, the ASF enterprise number, in every ASF header
	IANAIntel  = 343  // 0x0157, the enterprise number in the pong data
	TypePing   = 0x80 // Presence Ping
	TypePong   = 0x40 // Presence Pong
	HeaderSize = 12   // RMCP (4) + ASF (8) header bytes
	PongSize   = 28   // header + 16 bytes of pong data
	NoAck      = 0xFF // sequence number that asks for no RMCP ACK
	ackBit     = 0x80 // class byte bit marking an RMCP ACK
	pongLen    = 0x10 // data length of a pong
	maxPingLen = 0x40 // longest datagram worth looking at
)

// Sentinel reasons a datagram is not a presence ping. A *PingError wraps
// exactly one of them.
var (
	ErrShort       = errors.New("datagram shorter than an RMCP/ASF header")
	ErrTooLong     = errors.New("datagram longer than any presence ping")
	ErrVersion     = errors.New("not RMCP version 1.0")
	ErrAck         = errors.New("RMCP ACK, not a message")
	ErrClass       = errors.New("message class is not ASF")
	ErrEnterprise  = errors.New("ASF header does not carry IANA number 4542")
	ErrNotPing     = errors.New("ASF message type is not Presence Ping")
	ErrDataLength  = errors.New("data length does not match the datagram")
	ErrPingHasData = errors.New("presence ping with a non-empty data field")
)

// PingError says why and where a datagram was refused.
type PingError struct {
	Err    error
	Offset int
	Detail string
}

func (e *PingError) Error() string {
	return fmt.Sprintf("parse rmcp ping: %v at offset %d: %s", e.Err, e.Offset, e.Detail)
}

func (e *PingError) Unwrap() error { return e.Err }

func pingErr(err error, off int, format string, args ...any) error {
	return &PingError{Err: err, Offset: off, Detail: fmt.Sprintf(format, args...)}
}

// Ping is a parsed Presence Ping.
type Ping struct {
	Seq byte // RMCP sequence number, echoed in the pong
	Tag byte // ASF message tag, echoed in the pong
}

// ParsePing accepts exactly one Presence Ping:
// 06 00 SS 06 | 00 00 11 BE | 80 TT 00 00.
func ParsePing(b []byte) (Ping, error) {
	if len(b) < HeaderSize {
		return Ping{}, pingErr(ErrShort, len(b), "%d bytes, need %d", len(b), HeaderSize)
	}
	if len(b) > maxPingLen {
		return Ping{}, pingErr(ErrTooLong, maxPingLen, "%d bytes", len(b))
	}
	if b[0] != Version {
		return Ping{}, pingErr(ErrVersion, 0, "version byte 0x%02x", b[0])
	}
	if b[3]&ackBit != 0 {
		return Ping{}, pingErr(ErrAck, 3, "class byte 0x%02x", b[3])
	}
	if b[3]&0x1F != ClassASF {
		return Ping{}, pingErr(ErrClass, 3, "class 0x%02x", b[3]&0x1F)
	}
	if iana := binary.BigEndian.Uint32(b[4:8]); iana != IANAASF {
		return Ping{}, pingErr(ErrEnterprise, 4, "enterprise %d", iana)
	}
	if b[8] != TypePing {
		return Ping{}, pingErr(ErrNotPing, 8, "type 0x%02x", b[8])
	}
	if n := int(b[11]); n != len(b)-HeaderSize {
		return Ping{}, pingErr(ErrDataLength, 11, "announces %d data bytes, datagram has %d", n, len(b)-HeaderSize)
	}
	if b[11] != 0 {
		return Ping{}, pingErr(ErrPingHasData, 11, "%d data bytes", b[11])
	}
	return Ping{Seq: b[2], Tag: b[9]}, nil
}

// AppendPing encodes a Presence Ping, as MeshCentral's scanner sends it.
func AppendPing(b []byte, p Ping) []byte {
	return append(b, Version, 0, p.Seq, ClassASF, 0, 0, 0x11, 0xBE, TypePing, p.Tag, 0, 0)
}

// Pong is what an AMT device reports about itself in a Presence Pong.
type Pong struct {
	Seq, Tag byte
	// Port is the port AMT advertises in the OEM bytes: 16993 when TLS is on,
	// else 16992 (the simulator's configured ports when tests move them).
	Port uint16
	// BothPorts is set when 16992 and 16993 both accept connections.
	BothPorts bool
	// Major and Minor are the AMT firmware version. The wire has one nibble
	// each; see AppendPong for versions above 15.
	Major, Minor int
	// State is the provisioning state, 0 pre, 1 in, 2 post (§2.2).
	State int
}

// AppendPong encodes p as AMT firmware does (PROTOCOL.md §9.2):
// header with type 0x40 and data length 0x10, then IANA 343, OEM bytes
// (port big-endian, version nibbles, state bits 0-1 and the both-ports bit
// 2), supported entities 0x01 (ASF 1.0, no IPMI) and supported interactions
// 0x20, which MeshCentral requires, then six reserved zero bytes.
//
// A major version above 15 does not fit its nibble. No source says what
// firmware 16+ puts there [I]; the simulator saturates at 15 rather than
// wrapping to 0, so a scanner reading the nibble still sees "15 or later".
func AppendPong(b []byte, p Pong) []byte {
	major, minor := clampNibble(p.Major), clampNibble(p.Minor)
	oem := byte(p.State & 0x03)
	if p.BothPorts {
		oem |= 0x04
	}
	b = append(b, Version, 0, p.Seq, ClassASF, 0, 0, 0x11, 0xBE, TypePong, p.Tag, 0, pongLen)
	b = binary.BigEndian.AppendUint32(b, IANAIntel)
	b = binary.BigEndian.AppendUint16(b, p.Port)
	b = append(b, byte(major<<4|minor), oem, 0x01, 0x20)
	return append(b, 0, 0, 0, 0, 0, 0)
}

func clampNibble(v int) int {
	switch {
	case v < 0:
		return 0
	case v > 15:
		return 15
	}
	return v
}

// ParsePong decodes a pong built by AppendPong. Tests use it to check the
// simulator's answers; it is strict about every fixed byte.
func ParsePong(b []byte) (Pong, error) {
	if len(b) != PongSize {
		return Pong{}, fmt.Errorf("parse rmcp pong: %d bytes, want %d", len(b), PongSize)
	}
	if b[0] != Version || b[3] != ClassASF || binary.BigEndian.Uint32(b[4:8]) != IANAASF || b[8] != TypePong || b[11] != pongLen {
		return Pong{}, fmt.Errorf("parse rmcp pong: bad header % x", b[:HeaderSize])
	}
	if iana := binary.BigEndian.Uint32(b[12:16]); iana != IANAIntel {
		return Pong{}, fmt.Errorf("parse rmcp pong: enterprise %d, want %d", iana, IANAIntel)
	}
	if b[21]&0x20 == 0 {
		return Pong{}, fmt.Errorf("parse rmcp pong: interactions byte 0x%02x lacks 0x20", b[21])
	}
	return Pong{
		Seq:       b[2],
		Tag:       b[9],
		Port:      binary.BigEndian.Uint16(b[16:18]),
		Major:     int(b[18] >> 4),
		Minor:     int(b[18] & 0x0F),
		State:     int(b[19] & 0x03),
		BothPorts: b[19]&0x04 != 0,
	}, nil
}
