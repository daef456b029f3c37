//! OOM notifications for containers' init processes, cgroup v1: an eventfd registered on the
//! memory cgroup's `memory.oom_control` through `cgroup.event_control`. One thread waits on all
//! of them with epoll (started with the first container). The kernel also signals the eventfd
//! when the cgroup is removed; that ends the watch.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

struct Watch {
    container: String,
    dir: PathBuf,
    eventfd: EventFd,
    _control: File,
}

struct Inner {
    epoll: Epoll,
    watches: Mutex<HashMap<u64, Watch>>,
}

/// Callback receiving the id of a container whose init's cgroup hit OOM.
pub type OnOom = Box<dyn Fn(&str) + Send + Sync>;

pub struct OomWatcher {
    inner: Mutex<Option<Arc<Inner>>>,
    next: Mutex<u64>,
    on_oom: Arc<OnOom>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl OomWatcher {
    pub fn new(on_oom: OnOom) -> OomWatcher {
        OomWatcher {
            inner: Mutex::new(None),
            next: Mutex::new(0),
            on_oom: Arc::new(on_oom),
        }
    }

    fn inner(&self) -> io::Result<Arc<Inner>> {
        let mut guard = lock(&self.inner);
        if let Some(i) = guard.as_ref() {
            return Ok(Arc::clone(i));
        }
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(io::Error::from)?;
        let inner = Arc::new(Inner {
            epoll,
            watches: Mutex::new(HashMap::new()),
        });
        let thread_inner = Arc::clone(&inner);
        let on_oom = Arc::clone(&self.on_oom);
        std::thread::Builder::new()
            .name("oom".into())
            .stack_size(64 * 1024)
            .spawn(move || run(thread_inner, on_oom))?;
        *guard = Some(Arc::clone(&inner));
        Ok(inner)
    }

    /// Watches the memory cgroup of `pid` (the init of `container`).
    pub fn add(&self, container: &str, pid: u32) -> io::Result<()> {
        let dir = crate::metrics::v1_dir(pid, "memory")?;
        let control = File::open(dir.join("memory.oom_control"))?;
        let eventfd =
            EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC).map_err(io::Error::from)?;
        std::fs::write(
            dir.join("cgroup.event_control"),
            format!("{} {}", eventfd.as_fd().as_raw_fd(), control.as_raw_fd()),
        )?;
        let inner = self.inner()?;
        let token = {
            let mut n = lock(&self.next);
            *n += 1;
            *n
        };
        inner
            .epoll
            .add(&eventfd, EpollEvent::new(EpollFlags::EPOLLIN, token))
            .map_err(io::Error::from)?;
        lock(&inner.watches).insert(
            token,
            Watch {
                container: container.to_string(),
                dir,
                eventfd,
                _control: control,
            },
        );
        log::debug!("watching OOM of container {container}");
        Ok(())
    }

    /// Stops watching `container`.
    pub fn remove(&self, container: &str) {
        let Some(inner) = lock(&self.inner).clone() else {
            return;
        };
        let mut watches = lock(&inner.watches);
        let tokens: Vec<u64> = watches
            .iter()
            .filter(|(_, w)| w.container == container)
            .map(|(t, _)| *t)
            .collect();
        for t in tokens {
            if let Some(w) = watches.remove(&t) {
                let _ = inner.epoll.delete(&w.eventfd);
            }
        }
    }
}

fn run(inner: Arc<Inner>, on_oom: Arc<OnOom>) {
    let mut events = [EpollEvent::empty(); 16];
    loop {
        let n = match inner.epoll.wait(&mut events, EpollTimeout::NONE) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                log::error!("OOM watcher: epoll: {e}");
                return;
            }
        };
        for ev in &events[..n] {
            let token = ev.data();
            let mut watches = lock(&inner.watches);
            let Some(w) = watches.get(&token) else {
                continue;
            };
            let _ = w.eventfd.read();
            if !w.dir.join("memory.oom_control").exists() {
                // The cgroup was removed: the container is gone.
                if let Some(w) = watches.remove(&token) {
                    let _ = inner.epoll.delete(&w.eventfd);
                }
                continue;
            }
            let container = w.container.clone();
            drop(watches);
            log::info!("container {container}: out of memory");
            on_oom(&container);
        }
    }
}
