//! Sends each argument to a `shout` server and prints the replies.
//!
//! ```text
//! cargo run -p nkpacket-examples --example shout_client -- "shout://127.0.0.1:7100;transport=tcp" hello world
//! ```

use std::time::Duration;

use nkpacket::{Nkpacket, Options};
use nkpacket_examples::{Shout, replies};

#[tokio::main]
async fn main() -> Result<(), nkpacket::Error> {
    let mut args = std::env::args().skip(1);
    let uri = args
        .next()
        .unwrap_or_else(|| "shout://127.0.0.1:7100;transport=tcp".into());
    let nk = Nkpacket::builder().protocol("shout", Shout).build();
    let (state, mut rx) = replies();
    let opts = Options::default().with_user_state(state);
    for word in args {
        // The first send connects; the next ones reuse the same connection.
        nk.send(uri.as_str(), word, opts.clone()).await?;
        match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
            Ok(Some(reply)) => println!("{reply}"),
            _ => {
                return Err(nkpacket::Error::Timeout {
                    op: "reply",
                    after: Duration::from_secs(5),
                });
            }
        }
    }
    nk.shutdown().await;
    Ok(())
}
