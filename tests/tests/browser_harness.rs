//! The browser harness end to end: a real Chromium opens a page that a real
//! Berth server serves and renders with JavaScript.

use berth_tests::browser::Browser;
use berth_tests::db::{TestBackend, TestDb};
use berth_tests::process::TestServer;

#[tokio::test]
async fn a_headless_chromium_renders_the_servers_swagger_ui() {
    let db = TestDb::new(TestBackend::Sqlite).await;
    let server = TestServer::start(&db.url, &[]);
    let browser = Browser::start().await;

    browser.goto(&server.process.url("/docs/")).await;

    // Swagger UI draws the title from /openapi.json after the page loads.
    browser.wait_for_text(".info .title", "Berth").await;
    assert_eq!(browser.current_path().await, "/docs/");
    assert_eq!(browser.eval("window.innerWidth").await, 1280);
    assert_eq!(browser.console_errors().await, Vec::<String>::new());
    let screenshot = browser.screenshot("swagger-ui").await;
    let size = std::fs::metadata(&screenshot)
        .unwrap_or_else(|e| panic!("{}: {e}", screenshot.display()))
        .len();
    assert!(
        size > 10_000,
        "{} holds only {size} bytes",
        screenshot.display()
    );
}
