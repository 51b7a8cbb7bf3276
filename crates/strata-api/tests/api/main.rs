//! Integration tests of the api role: real instances on port 0, each over a fresh store (a
//! SQLite file, and a PostgreSQL schema when a server is reachable), driven over HTTP.

#[macro_use]
mod helpers;
mod accounts;
mod authz;
mod cart;
mod catalog;
mod contract;
mod images;
mod input;
mod openapi;
mod ops;
mod orders;
mod prices;
mod recommendations;
mod replica;
mod schemathesis;
mod search;
mod web;
