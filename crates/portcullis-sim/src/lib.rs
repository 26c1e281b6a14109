//! Simulators of the SaaS apps the lifecycle hub provisions.
//!
//! We cannot reach the real Expensify or Stripe from tests or CI, so each
//! simulator reproduces the vendor's contract as `../shared/spec/connectors.md`
//! records it: documented behaviour by default, every inferred behaviour
//! behind a switch. All of them share the machinery in [`common`]: a request
//! log, fault injection, a controllable clock, per-credential rate limiters,
//! and the `/_sim/*` back door that seeds data and changes state behind the
//! hub's back.
//!
//! A simulator runs in-process (tests hold its state directly) or as
//! `portcullis sim <app> --port N`.

pub mod common;
pub mod expensify;
pub mod payhawk;
pub mod scim;
pub mod stripe;
pub mod travelperk;

pub use common::{Fault, FaultRule, LoggedRequest, Running};

/// Every simulator serves the shared `/_sim` routes through its own
/// request log, faults, clock and reset.
macro_rules! back_door {
    ($($simulator:ty),*) => {$(
        impl common::BackDoor for $simulator {
            fn request_log(&self) -> &common::RequestLog {
                <$simulator>::log(self)
            }
            fn fault_rules(&self) -> &common::Faults {
                <$simulator>::faults(self)
            }
            fn sim_clock(&self) -> &common::Clock {
                <$simulator>::clock(self)
            }
            fn reset_all(&self) {
                <$simulator>::reset(self)
            }
        }
    )*};
}

back_door!(
    expensify::ExpensifySim,
    stripe::StripeSim,
    scim::ScimSim,
    travelperk::TravelPerkSim,
    payhawk::PayhawkSim
);
