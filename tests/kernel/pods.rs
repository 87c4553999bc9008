//! Building blocks for kernel tests: pods (a network namespace joined to the test's namespace by
//! a veth pair, with the pod server inside), an external client (another namespace, standing for
//! a machine outside the node), clients that talk to them, and checks of the kernel.
//!
//! Everything is done with the `ip` tool and the pod server binary: no test code needs to enter
//! another namespace itself. Each kernel test runs in its own fresh network namespace (the test
//! bed makes one per test), so addresses and routes made here don't leak between tests.

// A library for all kernel tests: at any time some helpers may have no user yet.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::Duration;

/// How long a client waits to connect or for an answer. Generous: the VM emulates the CPU.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a pod server may take to bind its ports.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Numbers the namespaces and links made by this process, so that two pods never share a name.
static NEXT_ID: AtomicU32 = AtomicU32::new(0);

fn next_id() -> u32 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// Fails the test when the kernel has no IPVS: a kernel test that passed on a kernel without IPVS
/// would prove nothing, so it must not skip.
pub fn require_ipvs() {
    assert!(
        std::path::Path::new("/proc/net/ip_vs").exists(),
        "/proc/net/ip_vs is missing: this kernel has no IPVS (run kernel tests in the test bed: \
         testbed/kernel-tests)"
    );
}

/// Runs a program and returns its standard output; panics naming the command line, the exit
/// status and standard error if it can't be started or fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{program} {}`: {e}", args.join(" ")));
    assert!(
        output.status.success(),
        "`{program} {}` failed with {}: {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Runs `ip` with the given arguments (see [`run`]).
pub fn ip(args: &[&str]) -> String {
    run("ip", args)
}

/// Addresses of `dev` as `ip -o addr show dev DEV` prints them (`... inet 10.0.0.1/32 ...`).
pub fn addresses_of(dev: &str) -> std::collections::BTreeSet<IpAddr> {
    ip(&["-o", "addr", "show", "dev", dev])
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet" || *w == "inet6")?;
            let cidr = words.next()?;
            Some(cidr.split('/').next()?.parse().expect("address from ip"))
        })
        .collect()
}

/// The pod server binary: `$POD_SERVER` (set by the test bed), else the example built beside
/// this test binary (target/debug/examples/pod_server, for runs on a host with IPVS).
pub fn pod_server_path() -> PathBuf {
    if let Some(path) = std::env::var_os("POD_SERVER") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("cannot find the test binary's path");
    let beside = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("examples").join("pod_server"));
    match beside {
        Some(path) if path.exists() => path,
        _ => panic!(
            "POD_SERVER is not set and no pod_server example is built beside {}: \
             run `cargo build --examples` or set POD_SERVER",
            exe.display()
        ),
    }
}

/// `ipvsadm`: `$IPVSADM` if set (the test bed sets it), else found on PATH.
pub fn ipvsadm_path() -> String {
    std::env::var("IPVSADM").unwrap_or_else(|_| "ipvsadm".to_owned())
}

/// The host part of "ADDR/PREFIX", checked.
fn address_of(cidr: &str) -> IpAddr {
    let (addr, prefix) = cidr
        .split_once('/')
        .unwrap_or_else(|| panic!("{cidr:?} is not ADDRESS/PREFIX"));
    prefix
        .parse::<u8>()
        .unwrap_or_else(|e| panic!("{cidr:?} has an invalid prefix length: {e}"));
    addr.parse()
        .unwrap_or_else(|e| panic!("{cidr:?} has an invalid address: {e}"))
}

/// "ADDR/32" or "ADDR/128".
fn host_cidr(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(_) => format!("{addr}/32"),
        IpAddr::V6(_) => format!("{addr}/128"),
    }
}

/// Adds `nodad` to an `ip addr add` of an IPv6 address: duplicate address detection would leave
/// the address unusable ("tentative") for a second or two after the link comes up.
fn with_nodad<'a>(addr: IpAddr, args: &[&'a str]) -> Vec<&'a str> {
    let mut args = args.to_vec();
    if addr.is_ipv6() {
        args.push("nodad");
    }
    args
}

/// Makes a network namespace and a veth pair between it and the current namespace: `outside`
/// here, `eth0` in the namespace. Both ends and the namespace's lo are up.
fn make_namespace_with_link(netns: &str, outside: &str) {
    ip(&["netns", "add", netns]);
    ip(&[
        "link", "add", outside, "type", "veth", "peer", "name", "eth0", "netns", netns,
    ]);
    ip(&["link", "set", outside, "up"]);
    ip(&["-n", netns, "link", "set", "lo", "up"]);
    ip(&["-n", netns, "link", "set", "eth0", "up"]);
}

/// Kills every process in a namespace, deletes the link (its veth peer goes with it) and the
/// namespace. Errors are ignored: this runs from Drop, possibly after a failed setup.
fn remove_namespace_and_link(netns: &str, outside: &str) {
    kill_processes_in(netns);
    let _ = Command::new("ip").args(["link", "del", outside]).output();
    let _ = Command::new("ip").args(["netns", "del", netns]).output();
}

/// Kills every process in a namespace and deletes it (its links go with it). Errors are ignored:
/// this runs from Drop, possibly after a failed setup.
pub fn remove_namespace(netns: &str) {
    kill_processes_in(netns);
    let _ = Command::new("ip").args(["netns", "del", netns]).output();
}

/// Kills (SIGKILL) every process in a namespace; errors are ignored.
pub fn kill_processes_in(netns: &str) {
    if let Ok(output) = Command::new("ip").args(["netns", "pids", netns]).output() {
        for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
}

/// Runs `ip -n NETNS -batch -` with these commands (one `ip` process instead of one per
/// command: under emulation each costs tens of milliseconds); panics naming the commands if any
/// fails.
pub fn ip_batch(netns: &str, commands: &[String]) {
    run_ip_batch(&["-n", netns], commands);
}

/// Like [`ip_batch`], in the current namespace.
pub fn ip_batch_here(commands: &[String]) {
    run_ip_batch(&[], commands);
}

fn run_ip_batch(options: &[&str], commands: &[String]) {
    let script = commands.join("\n") + "\n";
    let shown = format!("ip {} -batch -", options.join(" "));
    let mut child = Command::new("ip")
        .args(options)
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{shown}`: {e}"));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(script.as_bytes())
        .unwrap_or_else(|e| panic!("cannot write to `{shown}`: {e}"));
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("`{shown}` failed: {e}"));
    assert!(
        output.status.success(),
        "`{shown}` failed with {}: {}\ncommands:\n{script}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
}

/// The transport protocol of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// "TCP" or "UDP", as Kubernetes writes it.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
        }
    }
}

/// A pod server's answer to `--peer`: who answered and the address it saw the request come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAnswer {
    pub pod: String,
    pub peer: IpAddr,
}

/// Asks a pod server from the namespace `netns` (`pod_server --client-tcp|--client-udp TARGET
/// --peer` under `ip netns exec`) which pod answers and which source address it sees. An error
/// (no connection, no answer within the client's 5 s, refused) is returned as the client's
/// message, not a panic, so that a test can report many requests together.
pub fn ask_peer(netns: &str, protocol: Protocol, target: SocketAddr) -> Result<PeerAnswer, String> {
    let mode = match protocol {
        Protocol::Tcp => "--client-tcp",
        Protocol::Udp => "--client-udp",
    };
    let output = Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(pod_server_path())
        .args([mode, &target.to_string(), "--peer"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run the pod server client: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let message = stderr.trim().trim_start_matches("pod_server: ");
        return Err(if message.is_empty() {
            format!("client failed with {}", output.status)
        } else {
            message.to_owned()
        });
    }
    let line = stdout.trim_end_matches('\n');
    let (pod, peer) = line
        .split_once(' ')
        .ok_or_else(|| format!("answer {line:?} is not `NAME PEER_IP`"))?;
    let peer = peer
        .parse()
        .map_err(|e| format!("answer {line:?}: bad peer address: {e}"))?;
    Ok(PeerAnswer {
        pod: pod.to_owned(),
        peer,
    })
}

/// Runs the pod server in client mode inside a namespace and returns the first line it got.
fn client_in_namespace(netns: &str, mode: &str, target: SocketAddr) -> String {
    let server = pod_server_path();
    let server = server.to_string_lossy();
    let target = target.to_string();
    let line = run("ip", &["netns", "exec", netns, &server, mode, &target]);
    line.trim_end_matches('\n').to_owned()
}

/// A pod: a network namespace named after it, `eth0` inside with the pod's address, joined by a
/// veth pair to the test's namespace, whose end carries the gateway address, and the pod server
/// answering on the given ports. Routes as Calico sets them: a /32 (/128) route to the pod on the
/// node side, and in the pod a route to the gateway on eth0 and the default route through it;
/// so many pods can share one gateway address. Dropping it kills the server and removes the
/// namespace and the link.
pub struct Pod {
    /// The pod's name; the pod server answers with it.
    pub name: String,
    /// The pod's address.
    pub ip: IpAddr,
    /// The network namespace the pod lives in.
    pub netns: String,
    /// The node-side end of the pod's veth pair, in the test's namespace (or in `node`).
    pub host_link: String,
    /// The namespace of the node the pod is behind; None: the test's namespace.
    pub node: Option<String>,
    /// The pod server, once started.
    server: Option<Child>,
}

impl Pod {
    /// Starts a pod at `ip_cidr` (e.g. "10.244.0.5/24") with gateway `gateway` (an address on
    /// the node side, e.g. "10.244.0.1"); returns once the server listens on all ports.
    pub fn start(
        name: &str,
        ip_cidr: &str,
        gateway: &str,
        tcp_ports: &[u16],
        udp_ports: &[u16],
    ) -> Pod {
        let pod_ip = address_of(ip_cidr);
        let gateway_ip: IpAddr = gateway
            .parse()
            .unwrap_or_else(|e| panic!("pod {name}: invalid gateway {gateway:?}: {e}"));
        assert_eq!(
            pod_ip.is_ipv4(),
            gateway_ip.is_ipv4(),
            "pod {name}: address {ip_cidr} and gateway {gateway} are of different families"
        );
        let id = next_id();
        let netns = format!("pod-{name}-{}-{id}", std::process::id());
        let host_link = format!("vpod{id}");
        // Built before the first step so that Drop cleans up after a failure in any of them.
        let mut pod = Pod {
            name: name.to_owned(),
            ip: pod_ip,
            netns,
            host_link,
            node: None,
            server: None,
        };
        make_namespace_with_link(&pod.netns, &pod.host_link);
        let gateway_cidr = host_cidr(gateway_ip);
        ip(&with_nodad(
            gateway_ip,
            &["addr", "add", &gateway_cidr, "dev", &pod.host_link],
        ));
        ip(&["route", "add", &host_cidr(pod_ip), "dev", &pod.host_link]);
        ip(&with_nodad(
            pod_ip,
            &["-n", &pod.netns, "addr", "add", ip_cidr, "dev", "eth0"],
        ));
        ip(&["-n", &pod.netns, "route", "add", gateway, "dev", "eth0"]);
        ip(&[
            "-n", &pod.netns, "route", "add", "default", "via", gateway, "dev", "eth0",
        ]);
        let server = pod
            .server
            .insert(spawn_server(&pod.netns, name, tcp_ports, udp_ports));
        wait_until_ready(server, name);
        pod
    }

    /// Starts a pod behind the node whose network namespace is `node`, routed at layer 3 as
    /// Calico does it: `ip` (an IPv4 address) as a /32 on the pod's `eth0`, the pod's default
    /// route via `gateway` (an address the node holds on its end of the veth pair, so that the node
    /// has an address toward the pod) with `onlink`, and a /32 route to the pod on the node's end.
    /// `host_link` names the node's end. Returns once the server listens on all ports.
    pub fn start_behind(
        node: &str,
        name: &str,
        address: Ipv4Addr,
        gateway: Ipv4Addr,
        host_link: &str,
        tcp_ports: &[u16],
        udp_ports: &[u16],
    ) -> Pod {
        let id = next_id();
        let mut pod = Pod {
            name: name.to_owned(),
            ip: IpAddr::V4(address),
            netns: format!("{node}-{name}-{id}"),
            host_link: host_link.to_owned(),
            node: Some(node.to_owned()),
            server: None,
        };
        ip(&["netns", "add", &pod.netns]);
        ip_batch(
            node,
            &[
                format!(
                    "link add {host_link} type veth peer name eth0 netns {}",
                    pod.netns
                ),
                format!("addr add {gateway}/32 dev {host_link}"),
                format!("link set {host_link} up"),
                format!("route add {address}/32 dev {host_link}"),
            ],
        );
        ip_batch(
            &pod.netns,
            &[
                "link set lo up".to_owned(),
                format!("addr add {address}/32 dev eth0"),
                "link set eth0 up".to_owned(),
                format!("route add default via {gateway} dev eth0 onlink"),
            ],
        );
        let server = pod
            .server
            .insert(spawn_server(&pod.netns, name, tcp_ports, udp_ports));
        wait_until_ready(server, name);
        pod
    }

    /// The pod's address with a port, to connect to it directly.
    pub fn addr(&self, port: u16) -> SocketAddr {
        SocketAddr::new(self.ip, port)
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Some(server) = &mut self.server {
            let _ = server.kill();
            let _ = server.wait();
        }
        match &self.node {
            None => remove_namespace_and_link(&self.netns, &self.host_link),
            // The veth pair goes with the pod's namespace; the node's namespace is its owner's.
            Some(_) => remove_namespace(&self.netns),
        }
    }
}

fn spawn_server(netns: &str, name: &str, tcp_ports: &[u16], udp_ports: &[u16]) -> Child {
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", netns])
        .arg(pod_server_path())
        .args(["--name", name]);
    if !tcp_ports.is_empty() {
        command
            .arg("--tcp")
            .args(tcp_ports.iter().map(u16::to_string));
    }
    if !udp_ports.is_empty() {
        command
            .arg("--udp")
            .args(udp_ports.iter().map(u16::to_string));
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("pod {name}: cannot start the pod server: {e}"))
}

/// Waits for the pod server's "ready" line: before it, connections may be refused.
fn wait_until_ready(server: &mut Child, name: &str) {
    let stdout: ChildStdout = server.stdout.take().expect("pod server stdout is piped");
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let result = BufReader::new(stdout).read_line(&mut line).map(|_| line);
        let _ = sender.send(result);
    });
    match receiver.recv_timeout(START_TIMEOUT) {
        Ok(Ok(line)) if line.trim() == "ready" => {}
        Ok(Ok(line)) => panic!(
            "pod {name}: the pod server did not start (said {line:?}, exit status {:?})",
            server.try_wait()
        ),
        Ok(Err(e)) => panic!("pod {name}: cannot read from the pod server: {e}"),
        Err(_) => panic!("pod {name}: the pod server did not start within {START_TIMEOUT:?}"),
    }
}

/// Connects over TCP from the current namespace and returns the first line of the answer
/// (without the newline): a pod server's name.
pub fn tcp_hello(addr: SocketAddr) -> String {
    TcpConversation::open(addr).1
}

/// Sends one UDP datagram from the current namespace and returns the answer (without the
/// newline): a pod server's name.
pub fn udp_hello(addr: SocketAddr) -> String {
    let local: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("valid address")
    } else {
        "[::]:0".parse().expect("valid address")
    };
    let socket = std::net::UdpSocket::bind(local)
        .unwrap_or_else(|e| panic!("cannot bind a UDP socket to talk to {addr}: {e}"));
    socket
        .set_read_timeout(Some(CLIENT_TIMEOUT))
        .expect("cannot set a UDP read timeout");
    socket
        .send_to(b"hello\n", addr)
        .unwrap_or_else(|e| panic!("cannot send a UDP datagram to {addr}: {e}"));
    let mut buffer = [0u8; 2048];
    let (len, _) = socket
        .recv_from(&mut buffer)
        .unwrap_or_else(|e| panic!("no UDP answer from {addr} within {CLIENT_TIMEOUT:?}: {e}"));
    String::from_utf8_lossy(&buffer[..len])
        .trim_end_matches('\n')
        .to_owned()
}

/// An open TCP connection to a pod server, to keep talking on one connection (and so to one
/// backend, whatever IPVS does with new connections meanwhile).
pub struct TcpConversation {
    addr: SocketAddr,
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl TcpConversation {
    /// Connects and returns the conversation and the server's greeting (its name).
    pub fn open(addr: SocketAddr) -> (TcpConversation, String) {
        let stream = TcpStream::connect_timeout(&addr, CLIENT_TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
        stream
            .set_read_timeout(Some(CLIENT_TIMEOUT))
            .expect("cannot set a TCP read timeout");
        let reader = BufReader::new(stream.try_clone().expect("cannot clone a TCP stream"));
        let mut conversation = TcpConversation {
            addr,
            writer: stream,
            reader,
        };
        let greeting = conversation.read_line();
        (conversation, greeting)
    }

    /// Sends one line and returns the answer line (`NAME: <line>`).
    pub fn say(&mut self, line: &str) -> String {
        let addr = self.addr;
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .unwrap_or_else(|e| panic!("cannot send to {addr}: {e}"));
        self.read_line()
    }

    /// Ends the connection with a reset rather than a FIN, as a client that gives up does: the
    /// kernel's IPVS then counts it closed at once instead of after the TIME_WAIT it keeps for
    /// a FIN.
    pub fn reset(self) {
        socket2::SockRef::from(&self.writer)
            .set_linger(Some(Duration::ZERO))
            .expect("cannot set SO_LINGER");
        drop(self.reader);
        drop(self.writer);
    }

    fn read_line(&mut self) -> String {
        let addr = self.addr;
        let mut line = String::new();
        let len = self
            .reader
            .read_line(&mut line)
            .unwrap_or_else(|e| panic!("no answer from {addr} within {CLIENT_TIMEOUT:?}: {e}"));
        assert!(len > 0, "{addr} closed the connection without answering");
        line.trim_end_matches('\n').to_owned()
    }
}

/// A client outside the node: its own network namespace joined to the test's namespace by a veth
/// pair. The node side carries `node_cidr` (e.g. a node address "192.168.50.10/24" that NodePorts
/// listen on), the client `client_cidr` in the same subnet, with its default route via the node.
/// Creating one turns on IPv4 and IPv6 forwarding in the test's namespace, since traffic from
/// outside to a pod is forwarded by the node. Dropping it removes the namespace and the link.
pub struct ExternalClient {
    /// The client's address.
    pub ip: IpAddr,
    /// The client's network namespace.
    pub netns: String,
    /// The node-side end of the veth pair, in the test's namespace.
    pub host_link: String,
}

impl ExternalClient {
    pub fn start(client_cidr: &str, node_cidr: &str) -> ExternalClient {
        let client_ip = address_of(client_cidr);
        let node_ip = address_of(node_cidr);
        assert_eq!(
            client_ip.is_ipv4(),
            node_ip.is_ipv4(),
            "external client {client_cidr} and node address {node_cidr} are of different families"
        );
        let id = next_id();
        let client = ExternalClient {
            ip: client_ip,
            netns: format!("ext-{}-{id}", std::process::id()),
            host_link: format!("vext{id}"),
        };
        make_namespace_with_link(&client.netns, &client.host_link);
        ip(&with_nodad(
            node_ip,
            &["addr", "add", node_cidr, "dev", &client.host_link],
        ));
        ip(&with_nodad(
            client_ip,
            &[
                "-n",
                &client.netns,
                "addr",
                "add",
                client_cidr,
                "dev",
                "eth0",
            ],
        ));
        let node_ip = node_ip.to_string();
        ip(&[
            "-n",
            &client.netns,
            "route",
            "add",
            "default",
            "via",
            &node_ip,
            "dev",
            "eth0",
        ]);
        for (path, value) in [
            ("/proc/sys/net/ipv4/ip_forward", "1"),
            ("/proc/sys/net/ipv6/conf/all/forwarding", "1"),
        ] {
            std::fs::write(path, value).unwrap_or_else(|e| panic!("cannot write {path}: {e}"));
        }
        client
    }

    /// Like [`tcp_hello`], from the client's namespace.
    pub fn tcp_hello(&self, addr: SocketAddr) -> String {
        client_in_namespace(&self.netns, "--client-tcp", addr)
    }

    /// Like [`udp_hello`], from the client's namespace.
    pub fn udp_hello(&self, addr: SocketAddr) -> String {
        client_in_namespace(&self.netns, "--client-udp", addr)
    }
}

impl Drop for ExternalClient {
    fn drop(&mut self) {
        remove_namespace_and_link(&self.netns, &self.host_link);
    }
}
