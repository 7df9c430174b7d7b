"""Helpers shared by the test modules. A test module imports from here (or uses a fixture), never from
another test module."""
