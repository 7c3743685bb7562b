//! The store across processes: two processes writing to one PostgreSQL, and a
//! writer killed with SIGKILL mid-stream, on both backends.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_server::store::types::{KeyRange, RangeRequest};
use berth_tests::db::{TestBackend, TestDb};

fn probe() -> Command {
    Command::new(env!("CARGO_BIN_EXE_store-probe"))
}

/// Reads one line from a child's stdout, failing the test on EOF.
fn read_line(reader: &mut impl BufRead, what: &str) -> String {
    let mut line = String::new();
    let n = reader
        .read_line(&mut line)
        .unwrap_or_else(|e| panic!("reading {what}: {e}"));
    assert!(n > 0, "{what}: the process ended without answering");
    line.trim_end().to_owned()
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_see_the_same_gap_free_revision_sequence() {
    let db = TestDb::new(TestBackend::Postgres).await;
    // Create the schema before both processes start.
    db.open().await.close().await;
    const PER_PROCESS: usize = 2500;
    let total = 2 * PER_PROCESS;
    let mut processes: Vec<KillOnDrop> = ["/a/", "/b/"]
        .iter()
        .map(|prefix| {
            let child = probe()
                .args(["watch-write", "--database-url", &db.url, "--prefix", prefix])
                .args(["--count", &PER_PROCESS.to_string(), "--concurrency", "16"])
                .args(["--from", "2", "--expect", &total.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("starting store-probe");
            KillOnDrop(child)
        })
        .collect();
    let mut outputs: Vec<_> = processes
        .iter_mut()
        .map(|p| BufReader::new(p.0.stdout.take().expect("stdout")))
        .collect();
    for output in &mut outputs {
        assert_eq!(read_line(output, "the ready line"), "ready");
    }
    // Both start writing together.
    for process in &mut processes {
        process
            .0
            .stdin
            .as_mut()
            .expect("stdin")
            .write_all(b"go\n")
            .expect("starting the writes");
    }
    let results: Vec<serde_json::Value> = tokio::task::spawn_blocking(move || {
        outputs
            .iter_mut()
            .map(|o| serde_json::from_str(&read_line(o, "the result line")).expect("a JSON result"))
            .collect()
    })
    .await
    .unwrap();

    let expected: Vec<i64> = (2..2 + total as i64).collect();
    let mut acked = BTreeSet::new();
    for (i, result) in results.iter().enumerate() {
        let watched: Vec<i64> = serde_json::from_value(result["watched"].clone()).unwrap();
        assert_eq!(watched.len(), total, "process {i} saw every write once");
        assert_eq!(
            watched, expected,
            "process {i} saw the revisions gap-free and in order"
        );
        let own: Vec<i64> = serde_json::from_value(result["acked"].clone()).unwrap();
        assert_eq!(own.len(), PER_PROCESS);
        acked.extend(own);
    }
    assert_eq!(
        acked.into_iter().collect::<Vec<_>>(),
        expected,
        "each revision was given to exactly one write"
    );
}

/// Kills a writer mid-stream; every acknowledged write must be there after a
/// restart, and the revisions must still run without a gap.
async fn acknowledged_writes_survive_sigkill(backend: TestBackend) {
    let db = TestDb::new(backend).await;
    db.open().await.close().await;
    let mut child = KillOnDrop(
        probe()
            .args(["write", "--database-url", &db.url, "--prefix", "/crash/"])
            .args(["--count", "1000000", "--concurrency", "16"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting store-probe"),
    );
    let mut output = BufReader::new(child.0.stdout.take().expect("stdout"));
    let mut acked = Vec::new();
    let started = Instant::now();
    while acked.len() < 3000 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the writer is too slow"
        );
        acked.push(read_line(&mut output, "an ack line"));
    }
    // SIGKILL: no chance to flush or shut down.
    child.0.kill().expect("killing the writer");
    child.0.wait().expect("reaping the writer");
    // Lines already in the pipe were acknowledged too.
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut output, &mut rest).unwrap();
    acked.extend(rest.lines().map(str::to_owned));

    let store = db.open().await;
    let current = store.current_revision().await.unwrap();
    let all = store
        .range(RangeRequest {
            range: KeyRange::prefix("/crash/"),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut revisions: Vec<i64> = all.kvs.iter().map(|kv| kv.mod_revision).collect();
    revisions.sort();
    assert_eq!(
        revisions,
        (2..=current).collect::<Vec<_>>(),
        "the revision sequence is intact"
    );
    for line in &acked {
        let mut parts = line.split(' ');
        let (Some("ack"), Some(revision), Some(key)) = (parts.next(), parts.next(), parts.next())
        else {
            panic!("not an ack line: {line:?}");
        };
        let kv = store
            .get(key.as_bytes(), 0)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged {key} was lost"));
        assert_eq!(
            kv.mod_revision.to_string(),
            revision,
            "{key} kept its revision"
        );
    }
    assert!(acked.len() >= 3000);
    // The store goes on from where it was.
    let next = store.put(berth_server::store::types::PutRequest {
        key: b"/after".to_vec(),
        value: b"v".to_vec(),
        ..Default::default()
    });
    assert_eq!(next.await.unwrap().revision, current + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_acknowledged_writes_survive_sigkill() {
    acknowledged_writes_survive_sigkill(TestBackend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_acknowledged_writes_survive_sigkill() {
    acknowledged_writes_survive_sigkill(TestBackend::Postgres).await;
}
