// Package wsmanconformance holds the tests that drive libs/wsman against
// the AMT simulator (tools/amtsim) and compare its envelopes with
// go-wsman-messages. It is a module of its own so that libs never depends
// on tools/amtsim (which depends on libs): the only importer of both is
// this test module. It has no non-test code besides this comment.
package wsmanconformance
