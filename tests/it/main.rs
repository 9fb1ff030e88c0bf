//! The integration tests, linked into one binary so the dependency graph is linked once.

#[path = "../support/mod.rs"]
mod support;

mod argocd;
mod chart;
mod chat;
mod cli;
mod cluster_controllers;
mod cluster_install;
mod cluster_rbac;
mod crds;
#[path = "../e2e/mod.rs"]
mod e2e;
mod endpoint;
mod endpoint_steps;
mod eval;
mod examples;
mod gateway;
mod generator;
mod hub;
mod monitoring;
mod operator;
mod pipeline;
mod quickstart;
mod readme;
mod s3;
mod sagemaker;
mod shared_engine;
mod site_chrome;
mod sources;
mod steps;
mod training;
mod training_data;
mod up;
mod validation;
