//! STUN for nkpacket: Binding codec, responder on shared UDP ports, client with RFC 5389 retransmission.
