DELETE FROM checkpoints WHERE name = ?1
