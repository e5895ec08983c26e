"""Results database, leaderboard, exports and the HTML report."""
