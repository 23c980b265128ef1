mod gc;
