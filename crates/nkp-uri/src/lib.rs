//! The URI-list grammar of nkpacket.
