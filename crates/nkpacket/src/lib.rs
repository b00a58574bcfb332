//! nkpacket: a generic transport layer. Write a protocol once, run it over UDP, TCP, TLS, SCTP, WS and HTTP.
