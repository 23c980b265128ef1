//! Shared axum pieces used by the native API and every dialect: the server state, the
//! bearer-key principal, the streaming request body as a blocking reader with a size
//! limit, HTTP Range parsing, a download's Content-Disposition, and request metrics. No
//! route lives here.

pub mod attachment;
pub mod body;
pub mod error_shape;
pub mod metrics;
pub mod principal;
pub mod public_url;
pub mod range;
pub mod state;

pub use state::{AppState, ServerState};
