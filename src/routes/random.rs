//! `random`: mcrouter's RandomRoute. Every request goes to a child chosen at random (the executor's draw), so
//! repeated requests for one key may reach different children: for replicas holding the same data.

use crate::config::Target;

pub struct RandomRoute {
    children: Vec<Target>,
}

impl RandomRoute {
    pub fn new(children: &[Target]) -> RandomRoute {
        RandomRoute { children: children.to_vec() }
    }

    pub fn choose(&self, draw: u64) -> Target {
        self.children[(draw % self.children.len().max(1) as u64) as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_draw_picks_the_child() {
        let r = RandomRoute::new(&[Target::Pool(4), Target::Pool(7)]);
        assert_eq!(r.choose(0), Target::Pool(4));
        assert_eq!(r.choose(1), Target::Pool(7));
        assert_eq!(r.choose(u64::MAX), Target::Pool(7));
    }
}
