//! RFC 3263 location for nkpacket: NAPTR, SRV (RFC 2782 priority and weight), A/AAAA, with a TTL cache.
