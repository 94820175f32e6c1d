UPDATE progress SET position = ?1
