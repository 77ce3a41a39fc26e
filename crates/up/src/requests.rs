//! Requests to a running `weft up` from another process (`weft restart`): a Unix socket at
//! `<instance>/up.sock` (mode 0600) taking one line per connection, `restart WORDS..`, and
//! answering one line, `ok MESSAGE` or `error MESSAGE` (newlines in the message escaped as
//! `\n`). The serve loop of `weft up` applies each request between config edits.

use crate::UpError;
use crate::layout::Layout;
use crate::mesh::RestartTarget;
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

/// A request and where its answer goes.
pub(crate) type Request = (RestartTarget, oneshot::Sender<Result<String, String>>);

/// Longest request line read.
const MAX_LINE: u64 = 4096;

/// Listens on the instance's request socket, sending each request to `requests`.
///
/// # Errors
/// The socket cannot be made.
pub(crate) fn listen(layout: &Layout, requests: mpsc::Sender<Request>) -> Result<(), UpError> {
    let path = layout.up_socket();
    let file = |op| {
        let path = path.clone();
        move |source| UpError::File { op, path, source }
    };
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).map_err(file("listen on"))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(file("restrict"))?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(answer(stream, requests.clone()));
        }
    });
    Ok(())
}

async fn answer(stream: UnixStream, requests: mpsc::Sender<Request>) {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let read = tokio::io::AsyncReadExt::take(read, MAX_LINE);
    if tokio::io::BufReader::new(read)
        .read_line(&mut line)
        .await
        .is_err()
    {
        return;
    }
    let words: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
    let result = match words.split_first() {
        Some((verb, rest)) if verb == "restart" => match RestartTarget::parse(rest) {
            Ok(target) => {
                let (reply, answer) = oneshot::channel();
                if requests.send((target, reply)).await.is_err() {
                    Err("weft up is stopping".to_owned())
                } else {
                    answer
                        .await
                        .unwrap_or_else(|_| Err("weft up is stopping".to_owned()))
                }
            }
            Err(error) => Err(error),
        },
        _ => Err(format!("unknown request {:?}", line.trim())),
    };
    let reply = match result {
        Ok(message) => format!("ok {}\n", message.replace('\n', "\\n")),
        Err(message) => format!("error {}\n", message.replace('\n', "\\n")),
    };
    let _ = write.write_all(reply.as_bytes()).await;
}

/// Asks the `weft up` running in `layout` to restart `target`; its answer.
///
/// # Errors
/// No `weft up` runs there (`NoSuchPod`-like message), or it refused (the reason).
pub fn restart(layout: &Layout, target: &RestartTarget) -> Result<String, UpError> {
    let path = layout.up_socket();
    let not_running = || {
        UpError::Prerequisite(format!(
            "no weft up with prefix {:?} runs here (no {}); is the --prefix or --state-dir right?",
            layout.prefix(),
            path.display()
        ))
    };
    let mut stream = std::os::unix::net::UnixStream::connect(&path).map_err(|_| not_running())?;
    let request = format!("restart {}\n", target.words().join(" "));
    let io = |source| UpError::File {
        op: "talk to weft up over",
        path: path.clone(),
        source,
    };
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut answer = String::new();
    BufReader::new(&stream).read_line(&mut answer).map_err(io)?;
    let answer = answer.trim_end().replace("\\n", "\n");
    match answer.split_once(' ') {
        Some(("ok", message)) => Ok(message.to_owned()),
        Some(("error", message)) => Err(UpError::Restart(message.to_owned())),
        _ => Err(UpError::Restart(format!(
            "weft up gave no answer (it may have stopped): {answer:?}"
        ))),
    }
}
