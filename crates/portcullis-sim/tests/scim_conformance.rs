//! The SCIM simulator in `strict-rfc` checked by an outside suite: the
//! PyPI package `scim2-tester` (`conformance/scim2_check.py`), so the hub's
//! SCIM client is tested against a server that is itself held to the RFCs
//! by someone else's reading of them.
//!
//! Needs a Python with `conformance/requirements.txt` installed, named by
//! `PORTCULLIS_SCIM2_PYTHON`; `.ci/run` provides it. Without it the test
//! says it is skipped, unless `PORTCULLIS_REQUIRE_SCIM2_TESTER=1`, when it
//! fails.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use portcullis_sim::scim::{Config, DEFAULT_TOKEN, Profile, ScimSim};

const PYTHON_ENV: &str = "PORTCULLIS_SCIM2_PYTHON";
const REQUIRE_ENV: &str = "PORTCULLIS_REQUIRE_SCIM2_TESTER";
/// The checks scim2-tester 0.5.2 runs against a server with Users, Groups,
/// the Enterprise extension, PATCH, Bulk, sorting and ETags.
const EXPECTED_CHECKS: usize = 135;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/scim2_check.py")
}

/// The Python to run the suite with, or why there is none.
fn python() -> Result<PathBuf, String> {
    let Some(python) = std::env::var_os(PYTHON_ENV).map(PathBuf::from) else {
        return Err(format!("{PYTHON_ENV} is not set"));
    };
    let probe = std::process::Command::new(&python).args(["-c", "import scim2_tester, httpx2"]).output();
    match probe {
        Ok(output) if output.status.success() => Ok(python),
        Ok(output) => Err(format!(
            "{} cannot import scim2_tester and httpx2: {}",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(error) => Err(format!("{} does not run: {error}", python.display())),
    }
}

/// Runs the suite, killing it if it has not finished within five minutes.
fn run_suite(python: &Path, url: &str) -> std::process::Output {
    let mut child = std::process::Command::new(python)
        .arg(script())
        .args(["--url", url, "--token", DEFAULT_TOKEN])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("scim2-tester started");
    // Drained on threads: a full pipe would otherwise stall the suite.
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || read_all(&mut stdout));
    let err = std::thread::spawn(move || read_all(&mut stderr));
    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("scim2-tester did not finish within 5 minutes");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    std::process::Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

fn read_all(pipe: &mut impl Read) -> Vec<u8> {
    let mut bytes = Vec::new();
    let _ = pipe.read_to_end(&mut bytes);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_strict_rfc_profile_passes_scim2_tester() {
    let python = match python() {
        Ok(python) => python,
        Err(missing) if std::env::var(REQUIRE_ENV).is_ok_and(|v| v == "1") => {
            panic!("scim2-tester cannot run ({REQUIRE_ENV}=1): {missing}")
        }
        Err(missing) => {
            eprintln!(
                "NOTE: scim2-tester conformance test SKIPPED: {missing} (see \
                 tests/conformance/scim2_check.py; set {REQUIRE_ENV}=1 to make this an error)"
            );
            return;
        }
    };
    let (sim, running) = ScimSim::start(Config::profile(Profile::StrictRfc), 0).await.unwrap();
    let url = format!("{}/scim/v2", running.base_url());
    let output = tokio::task::spawn_blocking(move || run_suite(&python, &url)).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(output.status.success(), "scim2-tester found problems:\n{stdout}\n{stderr}");
    assert_eq!(
        summary,
        format!("{EXPECTED_CHECKS}/{EXPECTED_CHECKS} checks passed"),
        "every check, and all of them:\n{stdout}"
    );
    // The suite really talked to this simulator, through every resource kind.
    let paths: Vec<String> = sim.log().entries().iter().map(|r| r.path.clone()).collect();
    for path in ["/scim/v2/ServiceProviderConfig", "/scim/v2/Users", "/scim/v2/Groups"] {
        assert!(paths.iter().any(|p| p.starts_with(path)), "no request to {path}");
    }
}
