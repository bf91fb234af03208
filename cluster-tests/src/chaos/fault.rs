//! The kinds of fault the chaos suite injects.

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// `docker kill` of a follower, then `docker start` on its volume.
    KillFollower,
    /// The same, of the leader.
    KillLeader,
    /// The leader killed while tasks keep states at the cap (`[limits]
    /// max_state_bytes`) on every node.
    LargeStates,
    /// `docker pause` (the cgroup freezer) of a follower past the lease.
    Pause,
    /// The same, landing while one of its witnessed ticks is in the middle
    /// of its call (the witness holding it for `MID_TICK_HOLD`).
    PauseMidTick,
    /// `docker stop`: SIGTERM, the tasks handed off, exit 0; then a start.
    Stop,
    /// `nodes remove` of a follower that owns witnessed tasks, while it runs
    /// on; then `nodes add` of it again, with its data.
    Remove,
    /// `nodes drain` of a follower that owns witnessed tasks, its workers
    /// stuck on purpose (`[testing] stall_hand_offs_file`): the leader must
    /// force each hand-off.
    ForcedHandOff,
    /// A follower cut off from every other node, both ways.
    IsolateFollower,
    /// The same with REJECT rules (tcp-reset): to its peers the live
    /// follower looks like a process that is gone.
    RejectFollower,
    /// A follower cut off while its witnessed ticks each wait most of their
    /// budget on a slow downstream (`SLOW_HOLD`).
    SlowDownstreamCutOff,
    /// The leader cut off from every other node.
    IsolateLeader,
    /// The leader and one follower cut off from the other three (2|3; with
    /// 3 nodes, the leader alone).
    Split,
    /// A follower hears nothing from the others; what it sends gets through.
    OneWay,
    /// Every node drops 10% of the packets to and from the others.
    PacketLoss,
    /// Every packet between nodes waits 10 ms (every hop, so 20 ms round
    /// trips: a congested LAN; Raft's RPC timeout is the heartbeat interval).
    Delay,
    /// The small-disk node's data disk filled to the last byte.
    FullDisk,
    /// A follower killed, its data_dir emptied (a lost disk replaced), and
    /// started again with the same config; then `nodes replace` of it.
    DiskLost,
    /// A new module version rolled out while a follower is cut off.
    RolloutDuringPartition,
    /// A new module version rolled out while a follower is killed.
    RolloutDuringKill,
    /// A broken version of the witnessed module (it calls the witness, then
    /// fails every tick) rolled out and reverted by its gate while its
    /// ticks are in flight.
    RevertWithTicksInFlight,
    /// A rolling upgrade of the node binary while a node other than the
    /// one at its gate is killed (then started again).
    UpgradeDuringKill,
    /// The same while a node other than the one at its gate is cut off.
    UpgradeDuringPartition,
}

impl Fault {
    pub const ALL: [Fault; 23] = [
        Fault::KillFollower,
        Fault::KillLeader,
        Fault::LargeStates,
        Fault::Pause,
        Fault::PauseMidTick,
        Fault::Stop,
        Fault::Remove,
        Fault::ForcedHandOff,
        Fault::IsolateFollower,
        Fault::RejectFollower,
        Fault::SlowDownstreamCutOff,
        Fault::IsolateLeader,
        Fault::Split,
        Fault::OneWay,
        Fault::PacketLoss,
        Fault::Delay,
        Fault::FullDisk,
        Fault::DiskLost,
        Fault::RolloutDuringPartition,
        Fault::RolloutDuringKill,
        Fault::RevertWithTicksInFlight,
        Fault::UpgradeDuringKill,
        Fault::UpgradeDuringPartition,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillFollower => "kill follower",
            Fault::KillLeader => "kill leader",
            Fault::LargeStates => "large states (at the cap), kill leader",
            Fault::Pause => "pause past the lease",
            Fault::PauseMidTick => "pause in the middle of a tick",
            Fault::Stop => "stop (graceful)",
            Fault::Remove => "`nodes remove` of an owner, added back",
            Fault::ForcedHandOff => "drain, hand-offs forced (stuck worker)",
            Fault::IsolateFollower => "isolate follower",
            Fault::RejectFollower => "isolate follower by REJECT (tcp-reset)",
            Fault::SlowDownstreamCutOff => "slow downstream, follower cut off",
            Fault::IsolateLeader => "isolate leader",
            Fault::Split => "split, leader in the minority",
            Fault::OneWay => "one-way (inbound lost)",
            Fault::PacketLoss => "10% packet loss",
            Fault::Delay => "10 ms delay",
            Fault::FullDisk => "full disk",
            Fault::DiskLost => "a follower's disk lost, replaced",
            Fault::RolloutDuringPartition => "rollout during partition",
            Fault::RolloutDuringKill => "rollout during kill",
            Fault::RevertWithTicksInFlight => "rollout reverted, ticks in flight",
            Fault::UpgradeDuringKill => "node binary upgrade during kill",
            Fault::UpgradeDuringPartition => "node binary upgrade during partition",
        }
    }
}
