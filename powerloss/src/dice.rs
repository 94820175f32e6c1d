//! [`Dice`]: the seeded choices of a crash image.

/// A small deterministic generator (xorshift64): the same seed makes the
/// same choices, so a failing image can be built again.
#[derive(Debug, Clone)]
pub struct Dice(u64);

impl Dice {
    /// Dice that start from `seed` (0 is replaced, since xorshift would stay
    /// at 0 forever).
    pub fn new(seed: u64) -> Dice {
        Dice(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// A number in `0..sides` (0 when `sides` is 0).
    pub fn roll(&mut self, sides: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        if sides == 0 {
            0
        } else {
            self.0 % sides
        }
    }

    /// True with probability `numerator / denominator`.
    pub fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.roll(denominator) < numerator
    }
}

#[cfg(test)]
mod tests {
    use super::Dice;

    #[test]
    fn same_seed_makes_the_same_rolls() {
        let (mut a, mut b) = (Dice::new(42), Dice::new(42));
        let rolls: Vec<u64> = (0..100).map(|_| a.roll(1000)).collect();
        assert_eq!(rolls, (0..100).map(|_| b.roll(1000)).collect::<Vec<_>>());
    }

    #[test]
    fn seed_zero_still_rolls() {
        let mut dice = Dice::new(0);
        let rolls: Vec<u64> = (0..20).map(|_| dice.roll(1 << 20)).collect();
        assert!(rolls.iter().any(|&r| r != 0));
    }
}
