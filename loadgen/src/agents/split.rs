//! How a coordinated run divides its load: receivers in contiguous blocks
//! of user indexes, TCP publishers as slots of one global schedule (tick `i`
//! belongs to publisher `i mod P`, so an agent's share of the rate is its
//! share of the publishers), as evenly as the counts allow, the remainders
//! going to the first agents.

/// One agent's part of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgentShare {
    /// Index of the agent's first receiving client (user `<prefix>-<i>`).
    pub first_client: usize,
    /// Receiving clients.
    pub clients: usize,
    /// Global index of the agent's first publisher.
    pub first_channel: u32,
    /// Publishers the agent runs.
    pub channels: u32,
}

impl AgentShare {
    /// The share of the run's publish rate this agent's publishers carry.
    pub fn rate_share(&self, total_channels: u32) -> f64 {
        f64::from(self.channels) / f64::from(total_channels.max(1))
    }
}

/// Splits `clients` receivers and `channels` publishers over `agents`
/// agents: agent `a` gets ⌊n / agents⌋, plus one while `a` < the remainder.
pub fn split(clients: usize, channels: u32, agents: usize) -> Vec<AgentShare> {
    let agents = agents.max(1);
    let mut out = Vec::with_capacity(agents);
    let (mut next_client, mut next_channel) = (0usize, 0u32);
    for a in 0..agents {
        let c = clients / agents + usize::from(a < clients % agents);
        let p = channels / agents as u32 + u32::from((a as u32) < channels % agents as u32);
        out.push(AgentShare {
            first_client: next_client,
            clients: c,
            first_channel: next_channel,
            channels: p,
        });
        next_client += c;
        next_channel += p;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_and_publisher_goes_to_exactly_one_agent() {
        let s = split(30_001, 5, 2);
        assert_eq!(s[0].first_client, 0);
        assert_eq!(s[0].clients, 15_001);
        assert_eq!(s[1].first_client, 15_001);
        assert_eq!(s[1].clients, 15_000);
        assert_eq!((s[0].first_channel, s[0].channels), (0, 3));
        assert_eq!((s[1].first_channel, s[1].channels), (3, 2));
        assert!((s[0].rate_share(5) - 0.6).abs() < 1e-9);
    }

    #[test]
    fn fewer_publishers_than_agents_leaves_some_receiving_only() {
        let s = split(10, 1, 3);
        let channels: Vec<u32> = s.iter().map(|a| a.channels).collect();
        assert_eq!(channels, [1, 0, 0]);
        assert_eq!(s.iter().map(|a| a.clients).sum::<usize>(), 10);
        assert_eq!(s[2].first_client, 7);
    }
}
