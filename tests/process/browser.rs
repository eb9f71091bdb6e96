//! End to end in a real headless Chromium, driven through chromedriver (WebDriver): the
//! remember-me demo keeps a "remember me" login across a browser restart and forgets a plain
//! one, pages of another site cannot log a visitor in or out (cross-site request forgery), and
//! its flash messages show once after a login or a logout.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`apt-get install -y chromium
//! chromium-driver`; `$CHROME` and `$CHROMEDRIVER` override the paths) and the demo binary,
//! which a plain `cargo test` builds (with a target filter: `cargo build --example
//! remember_me` first). A missing piece fails the test with a message saying so.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::demo;

use demo::Demo;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Map, json};

/// A person's browser; headless Chromium's own User-Agent says `HeadlessChrome`, a robot.
const USER_AGENT: &str =
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";

/// A child process that is killed when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn find_program(env: &str, names: &[&str]) -> PathBuf {
    if let Some(path) = std::env::var_os(env) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "${env} names {}, which does not exist", path.display());
        return path;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in names {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "{} not found (set ${env} or install it: apt-get install -y chromium chromium-driver); \
         the browser test needs a real Chromium and cannot pass without one",
        names[0]
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `GET /status` of the WebDriver server on `port`: its body when it answers 200. (Read by its
/// `Content-Length`: chromedriver keeps the connection open.)
fn webdriver_status(port: u16) -> Option<String> {
    let stream =
        TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    (&stream).write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    if !line.starts_with("HTTP/1.1 200") {
        return None;
    }
    let mut length = 0;
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().ok()?;
        }
    }
    let mut body = vec![0; length];
    std::io::Read::read_exact(&mut reader, &mut body).ok()?;
    String::from_utf8(body).ok()
}

/// Starts chromedriver on a free port and waits until it is our chromedriver that answers
/// there (`GET /status`: ChromeDriver, ready). A port taken between finding it free and the
/// driver's bind makes the driver exit: it starts again on another port.
fn start_chromedriver(chromedriver: &Path) -> (Guard, u16) {
    let mut exits = Vec::new();
    for _ in 0..10 {
        let port = free_port();
        let mut driver = Guard(
            Command::new(chromedriver)
                .arg(format!("--port={port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .expect("start chromedriver"),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = driver.0.try_wait() {
                exits.push(format!("port {port}: exited with {status}"));
                break;
            }
            // Ours: a server that is not chromedriver, or another chromedriver (ours would have
            // failed to bind and exited, seen above), does not pass both checks.
            if webdriver_status(port)
                .is_some_and(|body| body.contains("ChromeDriver") && body.contains("\"ready\":true"))
                && driver.0.try_wait().is_ok_and(|s| s.is_none())
            {
                return (driver, port);
            }
            assert!(Instant::now() < deadline, "chromedriver was not ready on port {port} within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("chromedriver did not start on any of 10 free ports: {exits:?}");
}

struct World {
    demo: Demo,
    _driver: Guard,
    driver_url: String,
    chrome: PathBuf,
    base: String,
    dir: tempfile::TempDir,
}

fn start() -> World {
    let chrome = find_program("CHROME", &["chromium", "chromium-browser", "google-chrome"]);
    let chromedriver = find_program("CHROMEDRIVER", &["chromedriver"]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let data = dir.path().join("data");
    std::fs::write(
        &config,
        format!(
            "[session]\nsecret = \"browser test secret, at least 32 bytes\"\nshards = 2\n\
             [cookie]\nsecure = false\n[storage]\npersist = false\ndir = {:?}\n",
            data.display().to_string()
        ),
    )
    .unwrap();

    let demo = Demo::start(&config);
    let port = demo.port;

    let (driver, driver_port) = start_chromedriver(&chromedriver);
    World {
        demo,
        _driver: driver,
        driver_url: format!("http://127.0.0.1:{driver_port}"),
        chrome,
        base: format!("http://127.0.0.1:{port}"),
        dir,
    }
}

impl World {
    /// A browser on the profile `name`: the same name is the same profile, cookies and all.
    async fn browser(&self, name: &str) -> Client {
        let profile = self.dir.path().join(format!("profile-{name}"));
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1000,900",
            &format!("--user-agent={USER_AGENT}"),
            &format!("--user-data-dir={}", profile.display()),
        ];
        let mut caps = Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:chromeOptions".into(), json!({ "binary": self.chrome, "args": args }));
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&self.driver_url)
            .await
            .unwrap_or_else(|e| panic!("chromedriver could not start Chromium: {e}"))
    }

    /// Quits the browser the way a person does, so Chromium writes its cookie store, and
    /// waits until the profile is free for the next start.
    async fn quit(&self, client: Client, name: &str) {
        client.close().await.expect("close the browser");
        let lock = self.dir.path().join(format!("profile-{name}")).join("SingletonLock");
        let deadline = Instant::now() + Duration::from_secs(20);
        while lock.symlink_metadata().is_ok() {
            assert!(Instant::now() < deadline, "Chromium did not release its profile within 20 s");
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn text(&self, client: &Client, id: &str) -> String {
        client.find(Locator::Id(id)).await.unwrap_or_else(|e| panic!("#{id} on the page: {e}")).text().await.unwrap()
    }

    async fn log_in(&self, client: &Client, remember: bool) {
        client.goto(&format!("{}/", self.base)).await.unwrap();
        assert_eq!(self.text(client, "user").await, "nobody (user id 0)");
        client.find(Locator::Css("input[name=username]")).await.unwrap().send_keys("alice").await.unwrap();
        client.find(Locator::Css("input[name=password]")).await.unwrap().send_keys("wonderland").await.unwrap();
        if remember {
            client.find(Locator::Id("remember")).await.unwrap().click().await.unwrap();
        }
        client.find(Locator::Id("login")).await.unwrap().click().await.unwrap();
        // The form posts to /login and is sent back to / with a 303.
        client.wait().for_element(Locator::Id("logout")).await.unwrap();
        assert_eq!(self.text(client, "user").await, "alice (user id 1)");
        assert!(self.text(client, "persistent").await.starts_with(if remember { "yes" } else { "no" }));
    }

    async fn user_after_restart(&self, name: &str) -> String {
        let client = self.browser(name).await;
        client.goto(&format!("{}/", self.base)).await.unwrap();
        let user = self.text(&client, "user").await;
        self.quit(client, name).await;
        user
    }
}

#[actix_web::test]
async fn remember_me_survives_a_browser_restart_and_a_plain_login_does_not() {
    let world = start();

    // A: "remember me" ticked: still logged in after the browser is closed and started again.
    let client = world.browser("a").await;
    client.goto(&format!("{}/", world.base)).await.unwrap();
    let shot = client.screenshot().await.unwrap();
    std::fs::write(Path::new(env!("CARGO_TARGET_TMPDIR")).join("remember_me-login.png"), shot).unwrap();
    world.log_in(&client, true).await;
    let shot = client.screenshot().await.unwrap();
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("remember_me.png");
    std::fs::write(&path, shot).unwrap();
    eprintln!("screenshot of the demo page: {}", path.display());
    world.quit(client, "a").await;
    assert_eq!(world.user_after_restart("a").await, "alice (user id 1)");

    // B: not ticked: the session cookie ends with the browser.
    let client = world.browser("b").await;
    world.log_in(&client, false).await;
    world.quit(client, "b").await;
    assert_eq!(world.user_after_restart("b").await, "nobody (user id 0)");

    // The demo stops gracefully on SIGTERM (actix-web drains, then the engine shuts down).
    let mut world = world;
    world.demo.terminate();
    let status = world.demo.wait_for_exit(Duration::from_secs(20));
    assert!(status.success(), "the demo exited with {status} on SIGTERM");
}

/// The attacker's pages, for a victim whose demo is at `demo` (`http://127.0.0.1:port`). Each
/// page sends its forged request as soon as it loads; the `fetch` ones then add `#done`.
fn attack_page(path: &str, demo: &str) -> Option<String> {
    let login = r#"{"username":"alice","password":"wonderland","remember":true}"#;
    let autosubmit = |action: &str, enctype: &str, fields: &str| {
        format!(
            r#"<!doctype html><form id="f" method="post" action="{demo}{action}" enctype="{enctype}">{fields}</form>
<script>document.getElementById("f").submit()</script>"#
        )
    };
    let fetch = |route: &str| {
        format!(
            r#"<!doctype html><script>
fetch("{demo}{route}", {{method: "POST", mode: "no-cors", credentials: "include",
  headers: {{"Content-Type": "text/plain"}}, body: {login:?}}})
  .catch(() => null)
  .then(() => {{ const p = document.createElement("p"); p.id = "done"; document.body.append(p); }});
</script>"#
        )
    };
    // A text/plain form whose one field's name and value join into a JSON body.
    let json_fields = r#"<input name='{"username":"alice","password":"wonderland","remember":true,"x":"' value='"}'>"#;
    let form_fields = r#"<input name="username" value="alice"><input name="password" value="wonderland">
<input name="remember" value="on">"#;
    Some(match path {
        "/form-login" => autosubmit("/login", "application/x-www-form-urlencoded", form_fields),
        "/json-login" => autosubmit("/api/login", "text/plain", json_fields),
        "/fetch-login" => fetch("/api/login"),
        "/form-logout" => autosubmit("/logout", "application/x-www-form-urlencoded", ""),
        "/json-logout" => autosubmit("/api/logout", "text/plain", json_fields),
        "/fetch-logout" => fetch("/api/logout"),
        _ => return None,
    })
}

/// Serves [`attack_page`]s on a port of its own, on a thread that lives as long as the test.
fn serve_attacker(demo: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let (status, body) = match attack_page(&path, &demo) {
                Some(page) => ("200 OK", page),
                None => ("404 Not Found", String::new()),
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

impl World {
    /// Opens the attacker's page `path` and waits until its forged request has been answered:
    /// a form's navigation reached the demo, or the `fetch` settled.
    async fn visit_attack(&self, client: &Client, attacker: &str, path: &str) {
        client.goto(&format!("{attacker}{path}")).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let url = client.current_url().await.unwrap();
            let settled = if path.starts_with("/fetch") {
                client.find(Locator::Id("done")).await.is_ok()
            } else {
                url.as_str().starts_with(&self.base)
            };
            if settled {
                return;
            }
            assert!(Instant::now() < deadline, "{path}: the forged request was not answered within 20 s (at {url})");
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn user_now(&self, client: &Client) -> String {
        client.goto(&format!("{}/", self.base)).await.unwrap();
        self.text(client, "user").await
    }
}

#[actix_web::test]
async fn pages_of_another_site_cannot_log_a_visitor_in_or_out() {
    let world = start();
    // Another site: `localhost` is not the same site as `127.0.0.1`, whatever the ports.
    let attacker = format!("http://localhost:{}", serve_attacker(world.base.clone()));
    let client = world.browser("victim").await;
    assert_eq!(world.user_now(&client).await, "nobody (user id 0)");

    // Login CSRF: an auto-submitting form, a text/plain "JSON" form, a no-cors fetch.
    for page in ["/form-login", "/json-login", "/fetch-login"] {
        world.visit_attack(&client, &attacker, page).await;
        assert_eq!(world.user_now(&client).await, "nobody (user id 0)", "{page} logged the visitor in");
    }

    // Logout CSRF, against a visitor logged in for real.
    world.log_in(&client, false).await;
    for page in ["/form-logout", "/json-logout", "/fetch-logout"] {
        world.visit_attack(&client, &attacker, page).await;
        assert_eq!(world.user_now(&client).await, "alice (user id 1)", "{page} logged the visitor out");
    }

    // The visitor's own forms still work.
    client.find(Locator::Id("logout")).await.unwrap().click().await.unwrap();
    client.wait().for_element(Locator::Id("login")).await.unwrap();
    assert_eq!(world.text(&client, "user").await, "nobody (user id 0)");
    client.close().await.unwrap();
}

/// Two browsers (two profiles) log in as alice: each page's "Your devices" card lists both
/// sessions, one marked "this device"; one browser logs the other out with the card's button
/// (a plain form, no JavaScript), and the other's next page load is logged out.
#[actix_web::test]
async fn one_browser_logs_the_other_out_from_the_devices_card() {
    let world = start();
    let (a, b) = (world.browser("devices-a").await, world.browser("devices-b").await);
    world.log_in(&a, true).await;
    world.log_in(&b, false).await;
    for client in [&a, &b] {
        client.goto(&format!("{}/", world.base)).await.unwrap();
        let rows = client.find_all(Locator::Css("#devices tr.device")).await.unwrap();
        assert_eq!(rows.len(), 2, "two devices on each page");
        let this = client.find_all(Locator::Css("#devices b.this")).await.unwrap();
        assert_eq!(this.len(), 1, "one marked as this device");
        assert_eq!(client.find_all(Locator::Css("#devices button.revoke")).await.unwrap().len(), 1);
    }
    let shot = a.screenshot().await.unwrap();
    std::fs::write(Path::new(env!("CARGO_TARGET_TMPDIR")).join("remember_me-devices.png"), shot).unwrap();
    // A ends B's session.
    a.find(Locator::Css("#devices button.revoke")).await.unwrap().click().await.unwrap();
    a.wait().for_element(Locator::Id("devices")).await.unwrap();
    assert_eq!(a.find_all(Locator::Css("#devices tr.device")).await.unwrap().len(), 1);
    assert_eq!(world.text(&a, "user").await, "alice (user id 1)");
    b.goto(&format!("{}/", world.base)).await.unwrap();
    assert_eq!(world.text(&b, "user").await, "nobody (user id 0)", "B is logged out");
    assert!(b.find(Locator::Id("devices")).await.is_err(), "no devices card for a visitor");
    world.quit(a, "devices-a").await;
    world.quit(b, "devices-b").await;
}

impl World {
    /// The flash messages on the page now.
    async fn flashes(&self, client: &Client) -> Vec<String> {
        let mut texts = Vec::new();
        for note in client.find_all(Locator::Css("p.flash")).await.unwrap() {
            texts.push(note.text().await.unwrap());
        }
        texts
    }
}

/// Flash messages, rendered by the server (the page has no script at all): after the login
/// form's redirect the page says "Welcome back, alice", a reload no longer does; after the
/// logout form's, "You are logged out", once.
#[actix_web::test]
async fn the_page_welcomes_alice_once_and_says_when_she_is_logged_out() {
    let world = start();
    let client = world.browser("flash").await;
    world.log_in(&client, false).await;
    assert_eq!(world.flashes(&client).await, ["Welcome back, alice"]);
    assert!(!client.source().await.unwrap().contains("<script"), "rendered without JavaScript");
    let shot = client.screenshot().await.unwrap();
    std::fs::write(Path::new(env!("CARGO_TARGET_TMPDIR")).join("remember_me-flash.png"), shot).unwrap();
    client.refresh().await.unwrap();
    assert_eq!(world.text(&client, "user").await, "alice (user id 1)");
    assert!(world.flashes(&client).await.is_empty(), "shown once");

    client.find(Locator::Id("logout")).await.unwrap().click().await.unwrap();
    client.wait().for_element(Locator::Id("login")).await.unwrap();
    assert_eq!(world.text(&client, "user").await, "nobody (user id 0)");
    assert_eq!(world.flashes(&client).await, ["You are logged out"]);
    client.refresh().await.unwrap();
    assert!(world.flashes(&client).await.is_empty(), "shown once");
    world.quit(client, "flash").await;
}
