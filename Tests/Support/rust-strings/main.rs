//! A Rust program whose functions take the standard library's strings, for rust-str and
//! rust-string captures: each line read goes through all three, and their results are printed.
use std::hint::black_box;
use std::io::BufRead;

/// `&str`: a pointer and a length, in two registers.
#[inline(never)]
fn greet(name: &str) -> usize {
    black_box(name.bytes().map(usize::from).sum())
}

/// `String` by value: passed by reference, a pointer in one register.
#[inline(never)]
fn keep(name: String) -> usize {
    black_box(name.len() + 1)
}

struct Labelled {
    id: u32,
    label: String,
    tag: &'static str,
}

/// Both as fields of a struct behind a reference.
#[inline(never)]
fn weigh(item: &Labelled) -> usize {
    black_box(item.label.len() + item.tag.len() + item.id as usize)
}

fn main() {
    println!("ready");
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin is text");
        let item = Labelled { id: 7, label: line.to_uppercase(), tag: "static tag" };
        println!("{} {} {}", greet(&line), keep(line.clone()), weigh(&item));
    }
}
