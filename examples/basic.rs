//! The smallest actix-web app with draco-session: a per-visitor counter.
//!
//! ```sh
//! cargo run --example basic          # then: curl -A Mozilla -c jar -b jar http://127.0.0.1:8081/
//! ```
//!
//! Runs on plain HTTP, so the cookie's `Secure` flag is off here; keep it on behind HTTPS.

use actix_web::{App, HttpResponse, HttpServer, Result, web};
use draco_session::{Config, Session, SessionEngine, SessionMiddleware};

async fn index(session: Session) -> Result<HttpResponse> {
    if !session.is_available() {
        // Robots get no session at all, and no cookie.
        return Ok(HttpResponse::Ok().body("hello, robot\n"));
    }
    let visits = session.namespace("stats").increment("visits", 1).await?;
    Ok(HttpResponse::Ok().body(format!("visit number {visits}\n")))
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let mut config = Config::default();
    config.cookie.secure = false;
    config.storage.dir = "data-basic".into();
    let engine = SessionEngine::start(config).map_err(std::io::Error::other)?;
    let middleware = SessionMiddleware::new(engine.clone());
    println!("serving on http://127.0.0.1:8081");
    HttpServer::new(move || App::new().wrap(middleware.clone()).route("/", web::get().to(index)))
        .bind(("127.0.0.1", 8081))?
        .run()
        .await?;
    engine.shutdown().await;
    Ok(())
}
