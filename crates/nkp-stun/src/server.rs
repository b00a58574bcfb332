//! The STUN server side: [`respond`] answers one datagram (for a UDP listener's datagram hook
//! with `udp_stun_reply`), [`serve`] runs a standalone Binding server on a socket
//! (scheme `stun://0.0.0.0:3478`).

use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use tokio::net::UdpSocket;

use crate::codec::{Attribute, Class, Message, Method, is_stun};

/// The SOFTWARE attribute of every answer.
pub const SOFTWARE: &str = "nkpacket";

/// Answers a datagram received from `from` if it is a STUN Binding request.
///
/// * a valid Binding request → a Binding success response with the same transaction id,
///   carrying XOR-MAPPED-ADDRESS and MAPPED-ADDRESS (both `from`; IPv4 or IPv6, an
///   IPv4-mapped IPv6 source as plain IPv4), SOFTWARE `"nkpacket"` and FINGERPRINT;
/// * a Binding request with comprehension-required attributes (type < 0x8000) this codec does
///   not know → a 420 error response listing them in UNKNOWN-ATTRIBUTES (RFC 5389 §7.3.1);
/// * anything else → `None`: not STUN (protocol data on a shared port), malformed STUN, a
///   FINGERPRINT that does not match, indications, responses and other methods.
///
/// Request attributes are otherwise ignored: no authentication is asked for.
///
/// ```
/// use nkp_stun::codec::{Class, Message};
/// let (tid, request) = nkp_stun::binding_request();
/// let from = "[2001:db8::7]:40000".parse().unwrap();
/// let answer = nkp_stun::respond(&request, from).unwrap();
///
/// let msg = Message::decode(&answer).unwrap();
/// assert_eq!((msg.class, msg.transaction_id), (Class::SuccessResponse, tid));
/// assert_eq!(msg.mapped_address(), Some(from));
/// assert_eq!(nkp_stun::parse_binding_response(&answer, tid).unwrap(), from);
///
/// assert_eq!(nkp_stun::respond(b"hello", from), None);
/// ```
pub fn respond(request: &[u8], from: SocketAddr) -> Option<Bytes> {
    if !is_stun(request) {
        return None;
    }
    let request = Message::decode(request).ok()?;
    if request.class != Class::Request || request.method != Method::BINDING {
        return None;
    }
    let mut unknown: Vec<u16> = Vec::new();
    for attribute in &request.attributes {
        if let Attribute::Unknown { typ, .. } = attribute
            && *typ < 0x8000
            && !unknown.contains(typ)
        {
            unknown.push(*typ);
        }
    }
    let from = canonical(from);
    let tid = request.transaction_id;
    let response = if unknown.is_empty() {
        let mut m = Message::new(Class::SuccessResponse, Method::BINDING, tid);
        m.attributes.extend([
            Attribute::XorMappedAddress(from),
            Attribute::MappedAddress(from),
        ]);
        m
    } else {
        let mut m = Message::new(Class::ErrorResponse, Method::BINDING, tid);
        m.attributes.extend([
            Attribute::ErrorCode {
                code: 420,
                reason: "Unknown Attribute".into(),
            },
            Attribute::UnknownAttributes(unknown),
        ]);
        m
    };
    let mut response = response;
    response.attributes.extend([
        Attribute::Software(SOFTWARE.into()),
        Attribute::Fingerprint(0),
    ]);
    response.encode().ok()
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, seen on dual-stack sockets) as IPv4, so an
/// IPv4 client reads back its own family.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), addr.port()),
            None => addr,
        },
        IpAddr::V4(_) => addr,
    }
}

/// Receive errors a UDP socket can report for one datagram (an ICMP error from an earlier
/// send, a signal) without being broken.
pub(crate) fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

/// Runs a standalone STUN Binding server on `socket` until the socket fails: every datagram
/// goes through [`respond`], answers go back to the sender, everything else is dropped.
/// Send errors (an unreachable client) are logged and skipped; the function returns only on
/// a receive error that is not transient.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// use tokio::net::UdpSocket;
///
/// let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
/// let server_addr = server.local_addr().unwrap();
/// tokio::spawn(nkp_stun::serve(server));
///
/// let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
/// let mapped = nkp_stun::query(&client, server_addr, Duration::from_millis(500)).await.unwrap();
/// assert_eq!(mapped, client.local_addr().unwrap());
/// # }
/// ```
pub async fn serve(socket: UdpSocket) -> Result<Infallible, nkp_core::Error> {
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(e) if is_transient(&e) => continue,
            Err(e) => {
                return Err(nkp_core::Error::io(
                    "stun receive",
                    socket.local_addr().ok(),
                    e,
                ));
            }
        };
        let Some(answer) = buf.get(..n).and_then(|datagram| respond(datagram, from)) else {
            tracing::trace!(%from, len = n, "not a STUN Binding request, dropped");
            continue;
        };
        if let Err(e) = socket.send_to(&answer, from).await {
            tracing::debug!(%from, error = %e, "cannot send STUN answer");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{TransactionId, attr};

    fn request(attributes: Vec<Attribute>) -> (TransactionId, Bytes) {
        let tid = TransactionId::random();
        let mut m = Message::new(Class::Request, Method::BINDING, tid);
        m.attributes = attributes;
        (tid, m.encode().unwrap())
    }

    fn check_success(answer: &[u8], tid: TransactionId, from: SocketAddr) {
        let msg = Message::decode(answer).unwrap();
        assert_eq!(msg.class, Class::SuccessResponse);
        assert_eq!(msg.method, Method::BINDING);
        assert_eq!(msg.transaction_id, tid);
        assert_eq!(
            msg.attributes[..3],
            [
                Attribute::XorMappedAddress(from),
                Attribute::MappedAddress(from),
                Attribute::Software(SOFTWARE.into()),
            ]
        );
        assert!(matches!(msg.attributes[3], Attribute::Fingerprint(_)));
        assert_eq!(msg.attributes.len(), 4);
    }

    #[test]
    fn answers_ipv4_and_ipv6() {
        for from in [
            "127.0.0.1:40000",
            "[::1]:5060",
            "[2001:db8::1:2:3]:1",
            "0.0.0.0:0",
        ] {
            let from: SocketAddr = from.parse().unwrap();
            let (tid, req) = crate::binding_request();
            check_success(&respond(&req, from).unwrap(), tid, from);
        }
    }

    #[test]
    fn ipv4_mapped_source_is_answered_as_ipv4() {
        let (tid, req) = crate::binding_request();
        let answer = respond(&req, "[::ffff:192.0.2.7]:7000".parse().unwrap()).unwrap();
        check_success(&answer, tid, "192.0.2.7:7000".parse().unwrap());
    }

    #[test]
    fn known_and_optional_attributes_are_ignored() {
        let (tid, req) = request(vec![
            Attribute::Software("client".into()),
            Attribute::Username("alice".into()),
            Attribute::Unknown {
                typ: 0x8029, // ICE-CONTROLLED: comprehension-optional
                value: Bytes::from_static(&[0; 8]),
            },
            Attribute::Fingerprint(0),
        ]);
        let from = "192.0.2.1:1".parse().unwrap();
        check_success(&respond(&req, from).unwrap(), tid, from);
    }

    #[test]
    fn unknown_required_attributes_get_420() {
        let (tid, req) = request(vec![
            Attribute::Unknown {
                typ: 0x0024, // PRIORITY
                value: Bytes::from_static(&[0; 4]),
            },
            Attribute::Unknown {
                typ: 0x8029,
                value: Bytes::from_static(&[0; 8]),
            },
            Attribute::Unknown {
                typ: 0x0025, // USE-CANDIDATE
                value: Bytes::new(),
            },
            Attribute::Unknown {
                typ: 0x0024,
                value: Bytes::from_static(&[1; 4]),
            },
        ]);
        let answer = respond(&req, "127.0.0.1:9".parse().unwrap()).unwrap();
        let msg = Message::decode(&answer).unwrap();
        assert_eq!((msg.class, msg.transaction_id), (Class::ErrorResponse, tid));
        assert_eq!(msg.error_code(), Some((420, "Unknown Attribute")));
        assert_eq!(
            msg.attribute(attr::UNKNOWN_ATTRIBUTES),
            Some(&Attribute::UnknownAttributes(vec![0x0024, 0x0025]))
        );
        assert_eq!(msg.mapped_address(), None);
        let err = crate::parse_binding_response(&answer, tid).unwrap_err();
        assert_eq!(
            err.to_string(),
            "protocol violation: STUN error response 420 Unknown Attribute"
        );
    }

    #[test]
    fn bad_fingerprint_gets_no_answer() {
        let (_, req) = request(vec![
            Attribute::Software("x".into()),
            Attribute::Fingerprint(0),
        ]);
        let from = "127.0.0.1:9".parse().unwrap();
        assert!(respond(&req, from).is_some());
        let mut bad = req.to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert_eq!(respond(&bad, from), None);
    }

    #[test]
    fn only_binding_requests_are_answered() {
        let from = "127.0.0.1:9".parse().unwrap();
        let tid = TransactionId::random();
        for (class, method) in [
            (Class::Indication, Method::BINDING),
            (Class::SuccessResponse, Method::BINDING),
            (Class::ErrorResponse, Method::BINDING),
            (Class::Request, Method::new(0x003).unwrap()),
        ] {
            let bytes = Message::new(class, method, tid).encode().unwrap();
            assert_eq!(respond(&bytes, from), None, "{class:?} {method:?}");
        }
        // Not STUN at all: protocol data on a shared port, or an RFC 3489 request.
        let (_, req) = crate::binding_request();
        let mut classic = req.to_vec();
        classic[4..8].copy_from_slice(&[1, 2, 3, 4]);
        for data in [
            &b""[..],
            b"OPTIONS sip:x SIP/2.0\r\n\r\n",
            &[0u8; 20],
            &classic,
            &req[..19],
        ] {
            assert_eq!(respond(data, from), None);
        }
    }
}
