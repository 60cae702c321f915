"""Thin HTTP handlers: parse and validate, call the engine, render."""
