//! Runs the `shout` protocol server: every message comes back in upper case.
//!
//! ```text
//! cargo run -p nkpacket-examples --example shout_server -- "shout://127.0.0.1:7100;transport=tcp"
//! ```

use nkpacket::{Nkpacket, Options};
use nkpacket_examples::Shout;

#[tokio::main]
async fn main() -> Result<(), nkpacket::Error> {
    let uri = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "shout://127.0.0.1:7100;transport=tcp".into());
    let nk = Nkpacket::builder().protocol("shout", Shout).build();
    let listener = nk.start_listener(uri.as_str(), Options::default()).await?;
    println!(
        "listening {} {}",
        listener.info().transport(),
        listener.info().local()
    );
    tokio::signal::ctrl_c().await.ok();
    nk.shutdown().await;
    Ok(())
}
