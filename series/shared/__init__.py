"""What both lines use: the files they edit (`sites`), the edit they make
alike (`window_slots`), and the new code they share (`fragments/`)."""
