//! The metrics nkpacket records, read back through a debugging recorder (one test in this
//! binary: the recorder is process-wide; each snapshot takes the values since the last one).

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use nkpacket::{Nkpacket, Options, echo::Echo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// (name, labels, value) of one recorded metric.
type Sample = (String, Vec<(String, String)>, DebugValue);

fn value(snapshot: &[Sample], name: &str, label: (&str, &str)) -> f64 {
    snapshot
        .iter()
        .filter(|(n, labels, _)| {
            n == name && labels.iter().any(|(k, v)| k == label.0 && v == label.1)
        })
        .map(|(_, _, v)| match v {
            DebugValue::Counter(c) => *c as f64,
            DebugValue::Gauge(g) => g.into_inner(),
            DebugValue::Histogram(h) => h.len() as f64,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_and_message_counters() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();
    let snap = || {
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(k, _, _, v)| {
                let key = k.key();
                let labels = key
                    .labels()
                    .map(|l| (l.key().to_string(), l.value().to_string()))
                    .collect();
                (key.name().to_string(), labels, v)
            })
            .collect::<Vec<_>>()
    };

    let nk = Nkpacket::builder().protocol("echo", Echo).build();
    let l = nk
        .start_listener(
            "echo://127.0.0.1:0;transport=tcp;tcp_packet=2",
            Options::default().with_id("L"),
        )
        .await
        .unwrap();
    let mut s = tokio::net::TcpStream::connect(l.info().local())
        .await
        .unwrap();
    for _ in 0..3 {
        s.write_all(b"\x00\x05hello").await.unwrap();
        let mut buf = [0u8; 7];
        s.read_exact(&mut buf).await.unwrap();
    }
    let v = snap();
    assert_eq!(
        value(&v, "nkpacket_connections_total", ("listener", "L")),
        1.0
    );
    assert_eq!(
        value(&v, "nkpacket_connections_active", ("listener", "L")),
        1.0
    );
    assert_eq!(
        value(&v, "nkpacket_messages_received_total", ("listener", "L")),
        3.0
    );
    assert_eq!(
        value(&v, "nkpacket_messages_sent_total", ("listener", "L")),
        3.0
    );
    assert_eq!(
        value(&v, "nkpacket_bytes_received_total", ("listener", "L")),
        15.0
    );
    drop(s);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // (the debugging recorder's snapshots reset values: this one holds the change since)
    let v = snap();
    assert_eq!(
        value(&v, "nkpacket_connections_active", ("listener", "L")),
        -1.0
    );
    nk.shutdown().await;
}
