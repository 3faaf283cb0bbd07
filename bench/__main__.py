from bench.benchmark import main

main()
