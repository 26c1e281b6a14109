//! Argon2id hashing on a small, fixed pool of threads.
//!
//! Each hash needs 19 MiB and tens of milliseconds of CPU. On tokio's
//! blocking pool, a burst of sign-ups would spread that over dozens of
//! threads, each keeping its own allocator arena (we measured 1.1 GiB RSS
//! after four connections of `POST /api/users`), and could take every core
//! from token issuance. Here at most one hash runs per worker, the workers
//! are as many as the cores, and callers queue (asynchronously) beyond that.

use std::sync::{Arc, Mutex};

use portcullis_crypto::password;
use tokio::sync::{mpsc, oneshot};

use crate::{Result, ServiceError};

enum Job {
    Hash(String, oneshot::Sender<Result<String>>),
    Verify { password: String, stored: String, reply: oneshot::Sender<bool> },
}

/// Requests waiting for a worker before callers feel backpressure.
const QUEUE: usize = 1024;

#[derive(Clone)]
pub struct PasswordPool {
    jobs: mpsc::Sender<Job>,
}

impl PasswordPool {
    /// Starts `workers` hashing threads (at least one).
    pub fn start(workers: usize) -> Self {
        let (jobs, rx) = mpsc::channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..workers.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("argon2-{i}")).spawn(move || {
                loop {
                    // The lock is held only while waiting for the next job.
                    let job = match rx.lock() {
                        Ok(mut rx) => rx.blocking_recv(),
                        Err(_) => None,
                    };
                    match job {
                        Some(Job::Hash(plain, reply)) => {
                            let _ = reply.send(password::hash_password(&plain).map_err(ServiceError::from));
                        }
                        Some(Job::Verify { password, stored, reply }) => {
                            let _ = reply.send(password::verify_password(&password, &stored));
                        }
                        None => return,
                    }
                }
            });
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a password hashing thread");
            }
        }
        PasswordPool { jobs }
    }

    /// Hashes a password (Argon2id, PHC string).
    pub async fn hash(&self, plain: String) -> Result<String> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job::Hash(plain, reply)).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Checks a password against a stored hash; a malformed hash never matches.
    pub async fn verify(&self, password: String, stored: String) -> Result<bool> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job::Verify { password, stored, reply }).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())
    }
}

fn stopped() -> ServiceError {
    ServiceError::Internal("the password hashing pool has stopped".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hashes_and_verifies_concurrently_on_a_bounded_pool() {
        let pool = PasswordPool::start(2);
        let tasks: Vec<_> = (0..4)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move { (i, pool.hash(format!("password number {i}")).await) })
            })
            .collect();
        for task in tasks {
            let (i, hash) = task.await.unwrap();
            let hash = hash.unwrap();
            assert!(hash.starts_with("$argon2id$"));
            assert!(pool.verify(format!("password number {i}"), hash.clone()).await.unwrap());
            assert!(!pool.verify("another password".into(), hash).await.unwrap());
        }
        assert!(!pool.verify("x".into(), "not a hash".into()).await.unwrap());
    }
}
