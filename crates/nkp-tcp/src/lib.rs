//! TCP transport for nkpacket: listen and connect over IPv4 and IPv6 with raw or
//! length-prefix framing.

pub mod socket;
