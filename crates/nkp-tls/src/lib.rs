//! TLS transport for nkpacket: rustls (ring provider) over TCP, certificates and verification.
