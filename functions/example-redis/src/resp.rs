//! Just enough of the Redis protocol (RESP) for the example: send a command, read a status.

use secret_rotor::zeroize::Zeroizing;
use secret_rotor::{Deadline, Error};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A connection to one Redis server.
pub struct Connection {
    stream: BufReader<TcpStream>,
    deadline: Deadline,
}

/// A reply to a command that answers with a status line.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`, `+PONG`.
    Status(String),
    /// `-WRONGPASS …`: only the error code (first word) is kept, since some Redis errors echo
    /// the command's arguments, passwords included.
    Error(String),
}

impl Connection {
    /// Connects within the deadline.
    pub async fn connect(host: &str, port: u16, deadline: Deadline) -> Result<Self, Error> {
        let stream = deadline
            .run(format!("connecting to {host}:{port}"), async {
                TcpStream::connect((host, port))
                    .await
                    .map_err(|e| Error::transient(format!("cannot connect to {host}:{port}: {e}")))
            })
            .await?;
        Ok(Self {
            stream: BufReader::new(stream),
            deadline,
        })
    }

    /// Sends one command (an array of bulk strings) and reads its status reply.
    pub async fn command(&mut self, args: &[&str]) -> Result<Reply, Error> {
        // The frame may carry a password: zeroized when dropped.
        let mut frame = Zeroizing::new(format!("*{}\r\n", args.len()).into_bytes());
        for arg in args {
            frame.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            frame.extend_from_slice(arg.as_bytes());
            frame.extend_from_slice(b"\r\n");
        }
        let name = args.first().copied().unwrap_or_default().to_owned();
        let stream = &mut self.stream;
        self.deadline
            .run(format!("running {name}"), async move {
                let io = |e: std::io::Error| Error::transient(format!("redis connection failed: {e}"));
                stream.get_mut().write_all(&frame).await.map_err(io)?;
                let mut line = String::new();
                stream.read_line(&mut line).await.map_err(io)?;
                let line = line.trim_end();
                match line.split_at_checked(1) {
                    Some(("+", status)) => Ok(Reply::Status(status.to_owned())),
                    Some(("-", error)) => Ok(Reply::Error(
                        error.split_whitespace().next().unwrap_or("ERR").to_owned(),
                    )),
                    _ => Err(Error::transient(format!("unexpected reply to {name}"))),
                }
            })
            .await
    }
}
