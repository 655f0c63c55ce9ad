//! Who is in which room and how often each room is posted to: room sizes
//! drawn from the profile's distribution so they add up to every client's
//! memberships, clients dealt into rooms so each has exactly its
//! `memberships_per_client` distinct rooms, and a rate per room. A pure
//! function of (profile, clients, rate, seed).

use crate::workload::rng::SplitMix64;
use crate::workload::spec::{RateSplit, RoomSize, WorkloadError, WorkloadProfile};

/// Stream ids of [`SplitMix64::for_item`], one per kind of draw, so adding a
/// draw of one kind never moves another's.
pub(crate) const STREAM_SIZES: u64 = 1;
pub(crate) const STREAM_MEMBERS: u64 = 2;

/// The rooms of a run and their members.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// Members per room; room `k` is the `k`-th (for Zipf, rank `k`).
    pub sizes: Vec<usize>,
    /// Each client's rooms, ascending.
    pub memberships: Vec<Vec<u32>>,
    /// Room messages per second per room (direct messages not included).
    pub rates_per_sec: Vec<f64>,
}

/// Draws the assignment: `clients` clients, `room_rate_per_sec` for all
/// room messages together.
pub fn assign(
    w: &WorkloadProfile,
    clients: usize,
    room_rate_per_sec: f64,
    seed: u64,
) -> Result<Assignment, WorkloadError> {
    w.validate(clients)?;
    let sizes = room_sizes(w, clients, seed)?;
    let memberships = deal_members(&sizes, clients, w.memberships_per_client, seed)?;
    let rates_per_sec = room_rates(&sizes, w.rate, room_rate_per_sec);
    Ok(Assignment {
        sizes,
        memberships,
        rates_per_sec,
    })
}

/// Room sizes adding up to `clients × memberships_per_client`, each within
/// the distribution's bounds and at most `clients`.
pub fn room_sizes(
    w: &WorkloadProfile,
    clients: usize,
    seed: u64,
) -> Result<Vec<usize>, WorkloadError> {
    let total = clients * w.memberships_per_client;
    let mut rng = SplitMix64::for_item(seed, STREAM_SIZES, 0);
    let (weights, lo, hi): (Vec<f64>, usize, usize) = match w.room_size {
        RoomSize::Fixed => (vec![1.0; w.rooms], 1, clients),
        RoomSize::Uniform { min, max } => {
            let hi = max.min(clients);
            let draws = (0..w.rooms)
                .map(|_| rng.in_range(min as u64, hi.max(min) as u64) as f64)
                .collect();
            (draws, min, hi)
        }
        RoomSize::Zipf { exponent } => {
            let weights = (0..w.rooms)
                .map(|k| 1.0 / ((k + 1) as f64).powf(exponent))
                .collect();
            (weights, 1, clients)
        }
    };
    if lo > hi || w.rooms * lo > total || w.rooms * hi < total {
        return Err(WorkloadError(format!(
            "{} rooms of {lo}..={hi} members cannot hold {clients} clients × {} memberships = {total}",
            w.rooms, w.memberships_per_client
        )));
    }
    Ok(bounded_allocation(&weights, total, lo, hi))
}

/// Integers proportional to `weights` within `lo..=hi` adding up to `total`
/// (which must lie within `n·lo ..= n·hi`): the scale is found by bisection
/// on the clamped sum, then the fractions are rounded by largest remainder,
/// ties to the lower index — so weights that do not increase give sizes
/// that do not increase.
fn bounded_allocation(weights: &[f64], total: usize, lo: usize, hi: usize) -> Vec<usize> {
    let clamped = |scale: f64| -> Vec<f64> {
        weights
            .iter()
            .map(|w| (w * scale).clamp(lo as f64, hi as f64))
            .collect()
    };
    let max_weight = weights.iter().copied().fold(f64::MIN_POSITIVE, f64::max);
    let min_weight = weights.iter().copied().fold(f64::MAX, f64::min).max(1e-300);
    let (mut below, mut above) = (0.0, hi as f64 / min_weight * 2.0 + max_weight);
    for _ in 0..200 {
        let mid = (below + above) / 2.0;
        if clamped(mid).iter().sum::<f64>() < total as f64 {
            below = mid;
        } else {
            above = mid;
        }
    }
    let ideal = clamped(above);
    let mut sizes: Vec<usize> = ideal
        .iter()
        .map(|x| (x.floor() as usize).clamp(lo, hi))
        .collect();
    let assigned: usize = sizes.iter().sum();
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by(|&a, &b| {
        let fa = ideal[a] - ideal[a].floor();
        let fb = ideal[b] - ideal[b].floor();
        fb.total_cmp(&fa).then(a.cmp(&b))
    });
    // Float error can leave the floors a few short or over: walk the
    // remainders (then everything) until the sum is exact.
    let mut missing = total as i64 - assigned as i64;
    let mut at = 0;
    while missing != 0 && at < 4 * order.len() + 4 {
        let k = order[at % order.len()];
        if missing > 0 && sizes[k] < hi {
            sizes[k] += 1;
            missing -= 1;
        } else if missing < 0 && sizes[k] > lo {
            sizes[k] -= 1;
            missing += 1;
        }
        at += 1;
    }
    sizes
}

/// Deals clients into rooms: largest room first, each taking the clients
/// with the most memberships still to fill (random among equals). This
/// greedy realises any bipartite degree sequence that can be realised
/// (Gale–Ryser), and with every client owing the same count and no room
/// larger than the clients, these always can.
fn deal_members(
    sizes: &[usize],
    clients: usize,
    per_client: usize,
    seed: u64,
) -> Result<Vec<Vec<u32>>, WorkloadError> {
    let mut rng = SplitMix64::for_item(seed, STREAM_MEMBERS, 0);
    // buckets[c]: clients with c memberships still to fill.
    let mut buckets: Vec<Vec<u32>> = vec![Vec::new(); per_client + 1];
    buckets[per_client] = (0..clients as u32).collect();
    rng.shuffle(&mut buckets[per_client]);
    let mut memberships = vec![Vec::with_capacity(per_client); clients];
    let mut rooms: Vec<usize> = (0..sizes.len()).collect();
    rooms.sort_by(|&a, &b| sizes[b].cmp(&sizes[a]).then(a.cmp(&b)));
    let mut taken: Vec<(u32, usize)> = Vec::new();
    for room in rooms {
        taken.clear();
        let mut need = sizes[room];
        for owed in (1..=per_client).rev() {
            while need > 0 && !buckets[owed].is_empty() {
                let i = rng.below(buckets[owed].len() as u64) as usize;
                taken.push((buckets[owed].swap_remove(i), owed));
                need -= 1;
            }
        }
        if need > 0 {
            return Err(WorkloadError(format!(
                "room {room} of {} members could not be filled",
                sizes[room]
            )));
        }
        for &(client, owed) in &taken {
            memberships[client as usize].push(room as u32);
            buckets[owed - 1].push(client);
        }
    }
    if buckets[0].len() != clients {
        return Err(WorkloadError("memberships do not add up".into()));
    }
    for m in &mut memberships {
        m.sort_unstable();
    }
    Ok(memberships)
}

/// Room messages per second per room.
fn room_rates(sizes: &[usize], split: RateSplit, total_per_sec: f64) -> Vec<f64> {
    match split {
        RateSplit::Uniform => vec![total_per_sec / sizes.len() as f64; sizes.len()],
        RateSplit::BySize => {
            let members: usize = sizes.iter().sum();
            sizes
                .iter()
                .map(|&s| total_per_sec * s as f64 / members.max(1) as f64)
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn workload(rooms: usize, room_size: RoomSize, per_client: usize) -> WorkloadProfile {
        WorkloadProfile {
            rooms,
            room_size,
            memberships_per_client: per_client,
            ..Default::default()
        }
    }

    /// Every client in exactly `per_client` distinct rooms; every room has
    /// the members its size says.
    fn assert_consistent(a: &Assignment, clients: usize, per_client: usize) {
        assert_eq!(a.memberships.len(), clients);
        let mut counted = vec![0usize; a.sizes.len()];
        for m in &a.memberships {
            assert_eq!(m.len(), per_client);
            assert!(
                m.windows(2).all(|w| w[0] < w[1]),
                "distinct and sorted: {m:?}"
            );
            for &r in m {
                counted[r as usize] += 1;
            }
        }
        assert_eq!(counted, a.sizes);
    }

    #[test]
    fn fixed_sizes_differ_by_at_most_one() {
        let a = assign(&workload(7, RoomSize::Fixed, 3), 100, 70.0, 1).unwrap();
        assert_eq!(a.sizes.iter().sum::<usize>(), 300);
        assert!(a.sizes.iter().all(|&s| s == 42 || s == 43), "{:?}", a.sizes);
        assert_consistent(&a, 100, 3);
        assert!(a.rates_per_sec.iter().all(|&r| (r - 10.0).abs() < 1e-9));
    }

    #[test]
    fn the_many_small_rooms_shape_deals_out() {
        let w = workload(2000, RoomSize::Zipf { exponent: 1.0 }, 5);
        let a = assign(&w, 10_000, 2000.0, 9).unwrap();
        assert_consistent(&a, 10_000, 5);
        assert!(
            a.sizes[0] > 100 * a.sizes[1999],
            "skewed: {} vs {}",
            a.sizes[0],
            a.sizes[1999]
        );
        assert!(a.sizes.iter().all(|&s| (1..=10_000).contains(&s)));
    }

    #[test]
    fn a_steeper_zipf_puts_more_members_in_the_top_rooms() {
        let top_share = |exponent: f64| {
            let w = workload(100, RoomSize::Zipf { exponent }, 3);
            let a = assign(&w, 1000, 1.0, 1).unwrap();
            assert!(a.sizes.windows(2).all(|p| p[0] >= p[1]), "{:?}", a.sizes);
            a.sizes[..10].iter().sum::<usize>() as f64 / 3000.0
        };
        let (flat, mid, steep) = (top_share(0.3), top_share(1.0), top_share(2.0));
        assert!(flat < mid && mid < steep, "{flat} {mid} {steep}");
        // Rank k's size follows 1/(k+1)^s where no bound interferes.
        let w = workload(100, RoomSize::Zipf { exponent: 1.0 }, 3);
        let a = assign(&w, 1000, 1.0, 1).unwrap();
        let ratio = a.sizes[1] as f64 / a.sizes[3] as f64;
        assert!((ratio - 2.0).abs() < 0.1, "size(1)/size(3) = {ratio}");
    }

    #[test]
    fn by_size_rates_follow_the_sizes() {
        let w = WorkloadProfile {
            rate: RateSplit::BySize,
            ..workload(4, RoomSize::Zipf { exponent: 1.0 }, 2)
        };
        let a = assign(&w, 50, 100.0, 3).unwrap();
        assert!((a.rates_per_sec.iter().sum::<f64>() - 100.0).abs() < 1e-9);
        for k in 0..4 {
            let want = 100.0 * a.sizes[k] as f64 / 100.0;
            assert!((a.rates_per_sec[k] - want).abs() < 1e-9);
        }
    }

    #[test]
    fn impossible_shapes_are_refused() {
        // 3 rooms of at most 5 cannot hold 10 clients × 2 = 20 memberships.
        let w = workload(3, RoomSize::Uniform { min: 1, max: 5 }, 2);
        assert!(assign(&w, 10, 1.0, 0).is_err());
        // 50 rooms of at least 2 need 100 memberships; 10 × 1 is too few.
        let w = workload(50, RoomSize::Uniform { min: 2, max: 9 }, 1);
        assert!(assign(&w, 10, 1.0, 0).is_err());
    }

    fn any_shape() -> impl Strategy<Value = RoomSize> {
        prop_oneof![
            Just(RoomSize::Fixed),
            (1usize..6, 0usize..40).prop_map(|(min, extra)| RoomSize::Uniform {
                min,
                max: min + extra
            }),
            (0.2f64..2.5).prop_map(|exponent| RoomSize::Zipf { exponent }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The same (profile, seed) gives the same assignment; sizes stay in
        /// their bounds; memberships per client are exact; Zipf sizes do
        /// not grow with rank.
        #[test]
        fn assignments_are_deterministic_and_exact(
            rooms in 1usize..60, clients in 1usize..300, per in 1usize..6,
            shape in any_shape(), seed in any::<u64>(),
        ) {
            let w = workload(rooms, shape, per.min(rooms));
            let per = w.memberships_per_client;
            match assign(&w, clients, 50.0, seed) {
                Err(e) => {
                    // Only more rooms than memberships (a room needs a member),
                    // or uniform bounds that cannot hold the total, may fail.
                    let (min, hi) = match shape {
                        RoomSize::Uniform { min, max } => (min, max.min(clients)),
                        _ => (1, clients),
                    };
                    prop_assert!(min > hi || rooms * min > clients * per || rooms * hi < clients * per, "{}", e);
                }
                Ok(a) => {
                    prop_assert_eq!(&a, &assign(&w, clients, 50.0, seed).unwrap());
                    assert_consistent(&a, clients, per);
                    prop_assert!(a.sizes.iter().all(|&s| s >= 1 && s <= clients));
                    match shape {
                        RoomSize::Uniform { min, max } => {
                            prop_assert!(a.sizes.iter().all(|&s| s >= min && s <= max));
                        }
                        RoomSize::Zipf { .. } => {
                            prop_assert!(a.sizes.windows(2).all(|p| p[0] >= p[1]), "{:?}", a.sizes);
                        }
                        RoomSize::Fixed => {
                            let (lo, hi) = (a.sizes.iter().min().unwrap(), a.sizes.iter().max().unwrap());
                            prop_assert!(hi - lo <= 1);
                        }
                    }
                }
            }
        }
    }
}
