//! The lifecycle hub: keeps people's accounts in SaaS apps in step with the
//! directory.
//!
//! - [`relay`] reads directory changes from the outbox and plans steps;
//! - [`worker`] applies due steps through the app's [`connector`], under
//!   leases, with retries, and writes the outcome into the identity graph;
//! - [`reconcile`] reads an app's roster, finds drift and proposes a plan;
//! - [`webhook`] hears an app's signed change events and refreshes the graph.
//!
//! The rules that decide who should have which account live in [`graph`];
//! [`plan`] decides which steps may apply on their own.

pub mod connector;
pub mod graph;
pub mod plan;
pub mod reconcile;
pub mod relay;
pub mod tasks;
pub mod webhook;
pub mod worker;

use std::sync::Arc;

use portcullis_core::Core;
use tokio::task::JoinHandle;

pub use worker::Worker;

/// The hub's background tasks; dropping the handle stops them.
pub struct Hub {
    pub worker: Arc<Worker>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Hub {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Hub {
    /// The worker (for reconciliation and webhooks) without background tasks.
    pub fn idle(core: Arc<Core>) -> Hub {
        Hub { worker: Worker::new(core, connector::http::shared_throttle()), tasks: Vec::new() }
    }

    /// Starts the relay and the worker loop when the core's settings say so.
    pub fn start(core: Arc<Core>) -> Hub {
        let mut hub = Hub::idle(core.clone());
        if !core.config.hub.enabled {
            return hub;
        }
        let pause = core.config.hub.poll_interval;
        let relay_core = core.clone();
        hub.tasks.push(tokio::spawn(async move {
            loop {
                match relay::run_once(&relay_core).await {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(error) => tracing::warn!(%error, "the provisioning relay failed; retrying"),
                }
                tokio::time::sleep(pause).await;
            }
        }));
        let worker = hub.worker.clone();
        hub.tasks.push(tokio::spawn(async move {
            loop {
                match worker.run_once().await {
                    Ok(n) if n > 0 => continue,
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%error, "the provisioning worker failed; retrying"),
                }
                tokio::time::sleep(pause).await;
            }
        }));
        hub
    }
}
