//! UDP transport for nkpacket: connection-oriented UDP over one socket per listener, batched I/O.
