from loadtest.run import main

main()
