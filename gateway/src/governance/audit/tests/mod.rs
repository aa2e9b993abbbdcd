mod durability;
mod seal;
mod spill;
mod support;
mod verify;
mod writer;
