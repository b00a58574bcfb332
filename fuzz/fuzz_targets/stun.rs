//! STUN: the decoder, the responder of shared UDP ports and the client's transaction table,
//! on arbitrary datagrams.
//!
//! * `Message::decode` never panics; what it accepts encodes again and decodes to the same
//!   message (FINGERPRINT recomputed);
//! * `respond` answers only Binding requests, with a well-formed Binding response of the
//!   same transaction that tells the sender its address;
//! * `Transactions::on_datagram` consumes only Binding responses of its transactions and
//!   completes the waiting client; `parse_binding_response` never panics.
//!
//! Input: byte 0 is flags (bit 0: put the pending transaction's id into the datagram, bit 1:
//! IPv6 source), bytes 1..3 the source port, then the datagram.

#![no_main]

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use nkp_stun::codec::HEADER_LEN;
use nkp_stun::{Attribute, Class, Message, Method, Transactions};

/// The message with FINGERPRINT values zeroed (they are recomputed on encoding).
fn without_fingerprint_values(mut m: Message) -> Message {
    for a in &mut m.attributes {
        if let Attribute::Fingerprint(v) = a {
            *v = 0;
        }
    }
    m
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 3 {
        return;
    }
    let flags = input[0];
    let port = u16::from_be_bytes([input[1], input[2]]);
    let from = if flags & 2 != 0 {
        SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)),
            port,
        )
    } else {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), port)
    };
    let table = Transactions::new();
    let (tid, request, pending) = table.register();
    assert!(nkp_stun::is_stun(&request));

    let mut data = input[3..].to_vec();
    if flags & 1 != 0 && data.len() >= HEADER_LEN {
        data[8..HEADER_LEN].copy_from_slice(tid.as_bytes());
    }

    // The decoder, and encode ∘ decode.
    let decoded = Message::decode(&data);
    if let Ok(msg) = &decoded {
        assert!(
            nkp_stun::is_stun(&data),
            "decode accepted what is_stun refused"
        );
        let bytes = msg.encode().expect("a decoded message fits");
        let again = Message::decode(&bytes).expect("an encoded message decodes");
        assert_eq!(
            without_fingerprint_values(again),
            without_fingerprint_values(msg.clone())
        );
    }

    // The responder.
    if let Some(answer) = nkp_stun::respond(&data, from) {
        let request = decoded.as_ref().expect("only valid messages are answered");
        assert_eq!(
            (request.class, request.method),
            (Class::Request, Method::BINDING)
        );
        let reply = Message::decode(&answer).expect("answers decode");
        assert_eq!(reply.transaction_id, request.transaction_id);
        assert_eq!(reply.method, Method::BINDING);
        match reply.class {
            Class::SuccessResponse => {
                let canonical = match from.ip() {
                    IpAddr::V6(ip) => ip
                        .to_ipv4_mapped()
                        .map_or(from, |v4| SocketAddr::new(IpAddr::V4(v4), from.port())),
                    IpAddr::V4(_) => from,
                };
                assert_eq!(reply.mapped_address(), Some(canonical));
            }
            Class::ErrorResponse => assert_eq!(reply.error_code().map(|(c, _)| c), Some(420)),
            other => panic!("answer of class {other:?}"),
        }
        // A client waiting for that transaction takes the answer.
        let client = Transactions::new();
        let _ = nkp_stun::parse_binding_response(&answer, reply.transaction_id);
        assert!(!client.on_datagram(&answer, from), "no transaction pending");
    }

    // The client's table.
    let _ = nkp_stun::parse_binding_response(&data, tid);
    let consumed = table.on_datagram(&data, from);
    if consumed {
        let msg = decoded.as_ref().expect("only valid messages are consumed");
        assert_eq!(msg.transaction_id, tid);
        assert_eq!(msg.method, Method::BINDING);
        assert!(matches!(
            msg.class,
            Class::SuccessResponse | Class::ErrorResponse
        ));
        // The waiting client has its outcome now, without waiting.
        let mut cx = Context::from_waker(Waker::noop());
        let mut pending = pin!(pending);
        assert!(matches!(pending.as_mut().poll(&mut cx), Poll::Ready(_)));
        // A duplicate is consumed too (late answer to a retransmission).
        assert!(table.on_datagram(&data, from));
        assert_eq!(table.pending(), 0);
    } else {
        assert_eq!(table.pending(), 1);
        drop(pending);
        assert_eq!(table.pending(), 0);
    }
    table.close();
    assert!(!table.on_datagram(b"not stun", from));
});
