//! A queue that costs one pointer while it is empty.
//!
//! Every stream has a send queue and a receive queue, and most streams, most of the time, have
//! nothing in either: a `VecDeque` would cost 32 bytes each even then. A `Fifo` boxes its
//! `VecDeque` on the first push and frees it when the last item leaves.

use std::collections::VecDeque;

#[derive(Debug)]
// The box is the point: it keeps an empty queue to one pointer.
#[allow(clippy::box_collection)]
pub(crate) struct Fifo<T>(Option<Box<VecDeque<T>>>);

impl<T> Default for Fifo<T> {
    fn default() -> Self {
        Fifo(None)
    }
}

impl<T> Fifo<T> {
    pub(crate) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |items| items.len())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub(crate) fn push_back(&mut self, item: T) {
        self.0.get_or_insert_default().push_back(item);
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.0.iter().flat_map(|items| items.iter())
    }

    pub(crate) fn front_mut(&mut self) -> Option<&mut T> {
        self.0.as_mut()?.front_mut()
    }

    pub(crate) fn back(&self) -> Option<&T> {
        self.0.as_ref()?.back()
    }

    pub(crate) fn back_mut(&mut self) -> Option<&mut T> {
        self.0.as_mut()?.back_mut()
    }

    /// Removes the first item; the last one out frees the queue's memory.
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        let items = self.0.as_mut()?;
        let item = items.pop_front();
        if items.is_empty() {
            self.0 = None;
        }
        item
    }

    /// Drops every item and the queue's memory.
    pub(crate) fn clear(&mut self) {
        self.0 = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_come_out_in_order_and_an_emptied_queue_holds_no_memory() {
        let mut fifo = Fifo::default();
        assert!(fifo.is_empty() && fifo.front_mut().is_none());
        for i in 0..5 {
            fifo.push_back(i);
        }
        assert_eq!((fifo.len(), fifo.back()), (5, Some(&4)));
        assert_eq!(fifo.iter().sum::<i32>(), 10);
        *fifo.back_mut().unwrap() = 40;
        *fifo.front_mut().unwrap() = 10;
        let out: Vec<i32> = std::iter::from_fn(|| fifo.pop_front()).collect();
        assert_eq!(out, [10, 1, 2, 3, 40]);
        assert!(fifo.is_empty() && fifo.0.is_none());
        fifo.push_back(7);
        fifo.clear();
        assert!(fifo.is_empty() && fifo.0.is_none());
    }
}
