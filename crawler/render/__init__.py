"""Render: whether a page needs JavaScript, and the Playwright browser pool that renders it."""
