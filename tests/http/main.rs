//! The web layer over HTTP, in process (actix-web's test service) against the remember-me
//! demo's own routes: cookies and the header transport, login and logout, values, flash
//! messages, devices, CSRF, robots, cache headers, error statuses, engine trips per request,
//! recorded metrics, secrets, hostile clients, and the demo's hardening (login throttle, JSON
//! errors, security headers, its own counters, the devices card's page). Most tests run on
//! memory and Redis (`both!`, see `support/http.rs`); test names are `<area>::<backend>::<test>`.

#[macro_use]
#[path = "../support/http.rs"]
mod support;

mod adversarial;
mod api;
mod budget;
mod cache;
mod cookie_header;
mod cookies;
mod csrf;
mod demo;
mod devices;
mod engine_trips;
mod erase;
mod errors;
mod flash;
mod hardening;
mod header;
mod login;
mod metrics;
mod reauth;
mod robots;
mod secrets;
